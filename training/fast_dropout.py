"""Dropout whose masks are drawn by numpy's SFC64 generator: T5's dropout at a fraction of its CPU cost.

Why: on CPU, PyTorch draws a dropout mask with its Mersenne Twister, one number per element, and that draw
is about half of a bf16 TIGER-size training step (docs/tiger.md, "Training at the CPU's speed"): one
dropout over the (256, 82, 1024) feed-forward activation costs ~160 ms, of which the multiply is ~25 ms.
numpy's SFC64 produces the same amount of randomness in ~15 ms. Each mask here takes 16 bits of SFC64 output
per element and keeps the element when those bits are at or above ``round(p * 65536)``: a Bernoulli mask
with drop probability ``round(p * 65536) / 65536`` (0.100006 for ``p = 0.1``), scaled by ``1 / (1 - p)`` as
``torch.nn.Dropout`` scales, at every site T5 drops (embeddings, residual branches, feed-forward
activation, and, with ``eager`` attention, the attention probabilities).

Reproducibility: every mask's SFC64 stream is seeded by one draw from PyTorch's own generator, so
``torch.manual_seed`` fixes every mask and a resumed ``Trainer`` (which restores PyTorch's generator state)
continues bit for bit. The masks differ from ``torch.nn.Dropout``'s for the same seed: a run with
``training.fast_dropout`` is a different draw of the same model, not the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

FAST_EAGER_ATTENTION = "sidrec_eager_fast_dropout"
_SEED_BOUND = 2**62  # a draw from torch's generator below this seeds each mask's SFC64 stream


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean mask of ``shape``, each element ``False`` with probability ``round(p * 65536) / 65536``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    count = int(np.prod(shape))
    seed = int(torch.randint(0, _SEED_BOUND, (1,)))
    draws = np.random.SFC64(seed).random_raw((count + 3) // 4).view(np.uint16)[:count]
    return torch.from_numpy(draws >= np.uint16(round(p * 65536))).view(shape)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)`` with a :func:`keep_mask` (same scaling, cheaper mask)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":  # an accelerator's own generator is fast; the gain is a CPU one
        return nn.functional.dropout(x, p, training)
    return torch.where(keep_mask(x.shape, p), x, 0.0).mul_(1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same place in the model) drawing its mask with :func:`keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def eager_attention_with_fast_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5's eager attention (scores plus position bias and mask, softmax, dropout, values), dropping with
    :func:`fast_dropout`. Registered with transformers' ``AttentionInterface`` as ``FAST_EAGER_ATTENTION``."""
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = fast_dropout(torch.softmax(scores, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(FAST_EAGER_ATTENTION, eager_attention_with_fast_dropout)
# The masks eager attention adds to its scores (float, -inf where masked): without this entry transformers
# would build another kernel's masks (SDPA's booleans) for an unknown implementation name.
AttentionMaskInterface.register(FAST_EAGER_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` of ``model`` for a :class:`FastDropout` of the same ``p``, in place.

    A model on ``eager`` attention also gets :data:`FAST_EAGER_ATTENTION`, so its attention probabilities
    are dropped the same way (transformers does not save the attention kernel with the model: a saved model
    loads with the default one). Dropout has no weights, so saved weights are unchanged. Returns the number
    of modules swapped.
    """
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "eager":
        model.set_attn_implementation(FAST_EAGER_ATTENTION)
    return swapped
