"""Two costs of a CPU training step that change no number: freshly mapped memory and a round-trip cast.

Why: a profile of the paper-size Beauty recipe (bf16 autocast, eager attention, 2 cores) found, beside the
matrix products, two costs that buy nothing:

- **Memory the allocator hands back and maps again.** glibc serves every large block (a T5 activation of
  (256, 82, 1024) is 43-86 MB) with a fresh ``mmap`` and unmaps it when freed, so each step page-faults its
  activations in again: about a quarter of the step. :func:`keep_freed_memory` makes glibc keep freed
  memory for reuse while training (``mallopt``; the same switches as ``MALLOC_MMAP_MAX_=0`` and
  ``MALLOC_TRIM_THRESHOLD_``), and :func:`restore_freed_memory` puts glibc's defaults back.
- **T5's feed-forward cast under autocast.** ``T5DenseActDense`` casts its activation to the output
  weight's dtype (bf16 -> fp32) before ``wo``, and autocast casts it straight back to bf16 for the matrix
  product: two copies of the largest activation forward, two more backward, and the same numbers as no
  cast (bf16 -> fp32 -> bf16 is exact). :func:`skip_autocast_round_trip` skips the cast while autocast is on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5DenseActDense

# glibc's mallopt parameters (malloc.h). restore_freed_memory cannot give back glibc's *dynamic* thresholds
# (any mallopt call fixes them), so it sets where they settle in a process that frees large blocks: blocks
# above 32 MiB mapped (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit), the heap trimmed above twice that.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_SETTLED_MMAP_THRESHOLD, _DEFAULT_MMAP_MAX = 32 * 1024 * 1024, 65536
_KEEP_TRIM_THRESHOLD = 2**62  # never return the heap's free top to the system while training


def _glibc():
    """glibc's handle on Linux, else ``None`` (other C libraries have no ``mallopt``; nothing to do there)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018  (musl and others lack it)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse (glibc); ``True`` if it took effect."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD))


def restore_freed_memory() -> None:
    """glibc's large-block policy again, at its settled thresholds (blocks above 32 MiB mapped, heap trimmed)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _SETTLED_MMAP_THRESHOLD)


class _AutocastDenseActDense(T5DenseActDense):
    """``T5DenseActDense`` that leaves the activation's dtype to autocast when autocast is on."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(hidden_states.device.type):
            return super().forward(hidden_states)
        return self.wo(self.dropout(self.act(self.wi(hidden_states))))


def skip_autocast_round_trip(model: nn.Module) -> int:
    """Make every ``T5DenseActDense`` of ``model`` skip its cast under autocast (same weights, same numbers).

    Only the class of each block changes, so the state dict and the saved model are untouched. Returns the
    number of blocks changed.
    """
    changed = 0
    for module in model.modules():
        if type(module) is T5DenseActDense:
            module.__class__ = _AutocastDenseActDense
            changed += 1
    return changed
