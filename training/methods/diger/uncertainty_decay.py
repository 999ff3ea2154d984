"""DIGER's uncertainty decay: how much Gumbel noise each code assignment gets, and when it fades.

Each strategy turns the batch's deterministic codes into a ``noise_scale`` for
``SemanticIDQuantizer.assign(mode="gumbel", noise_scale=...)``, so exploration is decided here
and sampled in the one assignment function. Formulas and defaults follow METHODS.md (DIGER's
released code, arXiv 2601.19711):

- ``none``: no noise, the ablation baseline (Gumbel mode with zero noise = nearest code).
- ``anneal``: one scalar scale decayed geometrically per epoch (the plain schedule).
- ``frqud``: per-code EMA usage per level (starts uniform at 1/K, momentum 0.99, updated from the
  deterministic codes); a sample whose level-0 code is *hot* (EMA > 1.5 / K) keeps Gumbel
  sampling (noise ``scale``, 1 in DIGER) at every level, the others are assigned
  deterministically. Noise fades as usage evens.
- ``sdud``: one learnable sigma per level (initial 1.0) scales the noise (``|sigma|``), and the
  recommender loss L becomes ``L / (2 (|mean sigma| + lambda)^2) + log(|mean sigma| + lambda)``
  with lambda = 1.7, whose minimum over sigma is at ``sqrt(L) - lambda``: noise vanishes as the
  loss falls below lambda^2.

``training/joint.py`` consumes a strategy inside the joint recommender + tokenizer step.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import TrainerCallback


class UncertaintyDecay(nn.Module):
    """Base strategy: no noise, loss unchanged, nothing to update."""

    name = "none"

    def __init__(self, num_levels: int, codebook_size: int):
        super().__init__()
        self.num_levels = num_levels
        self.codebook_size = codebook_size

    def noise_scale(self, codes: torch.LongTensor) -> torch.Tensor:
        """Noise scale for ``assign`` given the batch's deterministic codes (B, L)."""
        return torch.zeros((), device=codes.device)

    def weight_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The recommender loss as the strategy optimises it (SDUD re-weights it)."""
        return loss

    @torch.no_grad()
    def update(self, codes: torch.LongTensor) -> None:
        """Record the batch's deterministic codes (B, L) after a training step."""

    def set_epoch(self, epoch: float) -> None:
        """Called at the start of each epoch by :class:`UncertaintyDecayCallback`."""

    def figures(self) -> dict[str, float]:
        """Numbers to log over training (noise level, hot fraction, sigma)."""
        return {}


class AnnealedNoise(UncertaintyDecay):
    """Scalar noise ``initial * decay ** epoch``: the same for every code and sample."""

    name = "anneal"

    def __init__(self, num_levels: int, codebook_size: int, initial: float = 1.0, decay: float = 0.9):
        super().__init__(num_levels, codebook_size)
        if initial < 0 or not 0 < decay <= 1:
            raise ValueError(f"anneal needs initial >= 0 and 0 < decay <= 1, got initial={initial}, decay={decay}")
        self.initial, self.decay = initial, decay
        self.scale = initial

    def set_epoch(self, epoch: float) -> None:
        self.scale = self.initial * self.decay ** int(epoch)

    def noise_scale(self, codes: torch.LongTensor) -> torch.Tensor:
        return torch.tensor(self.scale, device=codes.device)

    def figures(self) -> dict[str, float]:
        return {"noise_scale": self.scale}


class FrequencyUncertaintyDecay(UncertaintyDecay):
    """FrqUD: Gumbel noise only for samples whose level-0 code is used more than its share."""

    name = "frqud"

    def __init__(
        self, num_levels: int, codebook_size: int, momentum: float = 0.99, hot_factor: float = 1.5, scale: float = 1.0
    ):
        super().__init__(num_levels, codebook_size)
        if scale < 0:
            raise ValueError(f"frqud needs scale >= 0 (the noise of a hot sample), got {scale}")
        self.momentum, self.hot_factor, self.scale = momentum, hot_factor, scale
        self.register_buffer("usage", torch.full((num_levels, codebook_size), 1.0 / codebook_size))
        self._hot_fraction = 0.0

    @property
    def threshold(self) -> float:
        return self.hot_factor / self.codebook_size

    def noise_scale(self, codes: torch.LongTensor) -> torch.Tensor:
        hot = self.usage[0, codes[:, 0]] > self.threshold  # one decision per sample, taken at level 0
        self._hot_fraction = hot.float().mean().detach()  # read at logging steps only (no per-step sync)
        return self.scale * hot.to(self.usage.dtype)[:, None]  # (B, 1): the same decision at every level

    @torch.no_grad()
    def update(self, codes: torch.LongTensor) -> None:
        counts = torch.zeros_like(self.usage).scatter_add_(
            1, codes.t(), torch.ones(codes.t().shape, dtype=self.usage.dtype, device=codes.device)
        )
        frequency = counts / codes.size(0)
        self.usage.mul_(self.momentum).add_((1 - self.momentum) * frequency)

    def figures(self) -> dict[str, float]:
        return {
            "frqud/hot_fraction": float(self._hot_fraction),
            "frqud/hot_codes_level0": float((self.usage[0] > self.threshold).sum()),
        }


class SigmaUncertaintyDecay(UncertaintyDecay):
    """SDUD: learnable per-level sigma scales the noise and re-weights the recommender loss."""

    name = "sdud"

    def __init__(self, num_levels: int, codebook_size: int, initial_sigma: float = 1.0, lambda_: float = 1.7):
        super().__init__(num_levels, codebook_size)
        self.sigma = nn.Parameter(torch.full((num_levels,), float(initial_sigma)))
        self.lambda_ = lambda_

    def noise_scale(self, codes: torch.LongTensor) -> torch.Tensor:
        return self.sigma.abs()  # (L,): per level

    def weight_loss(self, loss: torch.Tensor) -> torch.Tensor:
        spread = self.sigma.abs().mean() + self.lambda_
        return loss / (2 * spread**2) + torch.log(spread)

    def figures(self) -> dict[str, float]:
        return {f"sdud/sigma_level{level}": value for level, value in enumerate(self.sigma.detach().abs().tolist())}


STRATEGIES: dict[str, type[UncertaintyDecay]] = {
    cls.name: cls for cls in (UncertaintyDecay, AnnealedNoise, FrequencyUncertaintyDecay, SigmaUncertaintyDecay)
}


def build_uncertainty_decay(name: str, num_levels: int, codebook_size: int, **options) -> UncertaintyDecay:
    """A strategy by recipe name (``none``, ``anneal``, ``frqud``, ``sdud``) with its options."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown uncertainty decay {name!r}; use one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](num_levels, codebook_size, **options)


class UncertaintyDecayCallback(TrainerCallback):
    """Tells a strategy, or a joint model (which passes it on), which epoch training is in.

    Annealing schedules and DIGER's switch to hard codes read it; anything with ``set_epoch`` works.
    """

    def __init__(self, strategy: UncertaintyDecay | nn.Module):
        self.strategy = strategy

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.strategy.set_epoch(state.epoch or 0.0)
