"""DMRec's distribution matching between the collaborative and the language space.

Every user has two diagonal Gaussians over the same latent space: ``q(z | x)`` from the base
recommender's own encoder (the collaborative space) and ``p(z | s)`` from the probabilistic
meta-network over the text embeddings of what the user interacted with (the language space).
The three strategies of the paper (SIGIR 2025, arXiv 2504.07363) pull them together:

- GODM: ``KL(q || N(0, I)) + beta * W2(q_collaborative, p)``;
- CPDM: ``KL(q || N(0, I)) + beta * (KL(q || m) + KL(p || m))`` with ``m`` the common prior, the
  Gaussian whose mean and log-variance average those of ``q`` and ``p``;
- MDDM: ``beta * KL(q || N(0, I)) + (1 - beta) * KL(q || p)``;

and ``none`` is the base model's own ELBO regulariser ``beta * KL(q || N(0, I))``. ``q`` is the
posterior the decoder samples from; with ``combine_posteriors`` it is the element-wise sum of the
two heads' means and log-variances, as the authors' code does, and GODM's Wasserstein term compares
the collaborative head alone with the language head (also as in the code). Every KL is summed over
latent dimensions and averaged over users. Lives in ``modeling/`` so checkpoints that use it load
with ``trust_remote_code`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MATCHING_STRATEGIES = ("none", "godm", "cpdm", "mddm")
WASSERSTEIN_EPSILON = 1e-7  # keeps the square root differentiable when the two Gaussians coincide


@dataclass
class DiagonalGaussian:
    """A batch of diagonal Gaussians, ``mean`` and ``logvar`` both (B, d)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, stochastic: bool) -> torch.Tensor:
        """The reparameterised draw ``mean + std * eps`` in training, the mean at inference."""
        if not stochastic:
            return self.mean
        return self.mean + self.std * torch.randn_like(self.mean)

    def __add__(self, other: DiagonalGaussian) -> DiagonalGaussian:
        """The authors' combination of the two heads: means and log-variances add."""
        return DiagonalGaussian(self.mean + other.mean, self.logvar + other.logvar)


def kl_divergence(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """``KL(q || p)`` summed over dimensions, mean over the batch.

    ``0.5 * sum(logvar_p - logvar_q + (var_q + (mu_q - mu_p)^2) / var_p - 1)``: exactly zero when
    the two coincide.
    """
    ratio = torch.exp(q.logvar - p.logvar)
    per_dim = p.logvar - q.logvar + ratio + (q.mean - p.mean).pow(2) * torch.exp(-p.logvar) - 1.0
    return 0.5 * per_dim.sum(dim=-1).mean()


def kl_to_standard_normal(q: DiagonalGaussian) -> torch.Tensor:
    """``KL(q || N(0, I))`` summed over dimensions, mean over the batch (the VAE regulariser)."""
    per_dim = q.mean.pow(2) + torch.exp(q.logvar) - q.logvar - 1.0
    return 0.5 * per_dim.sum(dim=-1).mean()


def wasserstein2(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """2-Wasserstein distance of diagonal Gaussians, ``sqrt(|mu_q - mu_p|^2 + |sigma_q - sigma_p|^2 + eps)``.

    Mean over the batch; ``eps`` = 1e-7 as in the authors' code.
    """
    squared = (q.mean - p.mean).pow(2).sum(dim=-1) + (q.std - p.std).pow(2).sum(dim=-1)
    return torch.sqrt(squared + WASSERSTEIN_EPSILON).mean()


def common_prior(q: DiagonalGaussian, p: DiagonalGaussian) -> DiagonalGaussian:
    """CPDM's common prior: the Gaussian halfway between ``q`` and ``p`` in mean and log-variance."""
    return DiagonalGaussian((q.mean + p.mean) / 2, (q.logvar + p.logvar) / 2)


def matching_loss(
    strategy: str,
    posterior: DiagonalGaussian,
    language: DiagonalGaussian | None,
    beta: float,
    collaborative: DiagonalGaussian | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The regulariser of ``strategy`` and its terms (for logging).

    Args:
        strategy: one of :data:`MATCHING_STRATEGIES`.
        posterior: ``q``, the Gaussian the decoder's ``z`` is drawn from.
        language: ``p(z | s)`` from the meta-network (unused by ``none``).
        beta: the strategy's weight (the KL weight for ``none``).
        collaborative: the collaborative head alone, for GODM's W2 (default: ``posterior``).
    """
    if strategy not in MATCHING_STRATEGIES:
        raise ValueError(f"unknown DMRec matching strategy {strategy!r}; choose one of {MATCHING_STRATEGIES}")
    prior = kl_to_standard_normal(posterior)
    if strategy == "none":
        return beta * prior, {"kl_prior": prior}
    if language is None:
        raise ValueError(f"matching strategy {strategy!r} needs the language-space Gaussian p(z | s)")
    if strategy == "godm":
        distance = wasserstein2(collaborative if collaborative is not None else posterior, language)
        return prior + beta * distance, {"kl_prior": prior, "wasserstein": distance}
    if strategy == "cpdm":
        middle = common_prior(posterior, language)
        to_common = kl_divergence(posterior, middle) + kl_divergence(language, middle)
        return prior + beta * to_common, {"kl_prior": prior, "kl_common": to_common}
    to_language = kl_divergence(posterior, language)
    return beta * prior + (1.0 - beta) * to_language, {"kl_prior": prior, "kl_language": to_language}


class GaussianHead(nn.Module):
    """``Linear -> (mean, logvar)``: one layer to the two halves of a diagonal Gaussian."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__()
        self.latent_size = latent_size
        self.proj = nn.Linear(input_size, 2 * latent_size)

    def forward(self, hidden: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = self.proj(hidden).split(self.latent_size, dim=-1)
        return DiagonalGaussian(mean, logvar)


class ProbabilisticMetaNetwork(nn.Module):
    """``p(z | s)``: aggregated text embedding -> ``Linear -> tanh -> Linear`` -> diagonal Gaussian.

    The paper's shape: text size -> 600 -> 2 x latent. Its input is the text embedding of what the
    user interacted with (summed or averaged by the caller), plus a user text embedding when the
    data has one.
    """

    def __init__(self, text_size: int, hidden_size: int, latent_size: int):
        super().__init__()
        self.hidden = nn.Linear(text_size, hidden_size)
        self.head = GaussianHead(hidden_size, latent_size)

    def forward(self, text: torch.Tensor) -> DiagonalGaussian:
        return self.head(torch.tanh(self.hidden(text)))
