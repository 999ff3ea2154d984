"""Frozen code levels: scale-aware tokenizer updates for DIGER's joint training.

The deep levels of a residual quantizer have tiny nearest-vs-second code gaps (1e-4 in squared
distance on the Scientific demo), so any update of their codebooks re-labels most items there and
the recommender's embeddings of those codes go stale (docs/diger.md, churn). Freezing the codebooks
of chosen levels keeps the coarse levels trainable while the fine ones stay where the RQ-VAE fit left
them. The codebooks are one ``(levels, codes, dim)`` parameter, so a level cannot be frozen with
``requires_grad``; this callback does it in two places instead:

- a gradient hook zeroes the frozen levels' gradient before it is clipped, so they neither move nor
  shrink the other parameters' step through the global gradient norm;
- after every optimizer step the frozen levels are written back, which undoes decoupled weight
  decay (AdamW shrinks every parameter it holds, gradient or not).

The hook is registered when training begins (on the parameter the trainer actually steps) and removed
when it ends: a tensor hook does not survive ``copy.deepcopy``, so it cannot live on the model.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


def check_frozen_levels(levels: list[int] | tuple[int, ...], num_levels: int) -> tuple[int, ...]:
    """The distinct frozen levels, sorted; a level outside ``0 .. num_levels - 1`` is an error that names the range."""
    bad = [level for level in levels if not isinstance(level, int) or not 0 <= level < num_levels]
    if bad:
        raise ValueError(
            f"frozen code levels {bad} are not levels of this quantizer: use levels 0 to {num_levels - 1} "
            f"(0 is the coarsest; the collision level is not a codebook)"
        )
    return tuple(sorted(set(levels)))


class FrozenCodeLevelsCallback(TrainerCallback):
    """Keep the codebooks of ``levels`` exactly as training began (see the module docstring)."""

    def __init__(self, levels: tuple[int, ...]):
        self.levels = list(levels)
        self._kept: torch.Tensor | None = None
        self._hook = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        codebooks = model.quantizer.codebooks
        self.levels = list(check_frozen_levels(self.levels, codebooks.size(0)))
        # After a checkpoint was loaded: a resumed run keeps the levels it froze (written back at every step).
        self._kept = codebooks.detach()[self.levels].clone()
        mask = torch.ones(codebooks.size(0), 1, 1, dtype=codebooks.dtype, device=codebooks.device)
        mask[self.levels] = 0.0
        if self._hook is None:
            self._hook = codebooks.register_hook(lambda grad: grad * mask)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            model.quantizer.codebooks[self.levels] = self._kept

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
