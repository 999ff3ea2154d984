"""What every ranker returns: top-k item indices and their scores (one type for every model).

Also the two helpers the full-ranking models share to drop items a user already has from their scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class Recommendations(ModelOutput):
    """Top-k items per user, best first.

    Attributes:
        items: (B, k) item indices; -1 only when the catalogue has fewer than k items.
        scores: (B, k) summed log-probabilities of the items' semantic IDs.
    """

    items: torch.LongTensor | None = None
    scores: torch.FloatTensor | None = None


def pad_item_sets(item_sets: list[list[int]], pad: int = -1) -> torch.LongTensor:
    """(B, longest) tensor of item indices, padded with ``pad``."""
    width = max((len(items) for items in item_sets), default=0)
    padded = torch.full((len(item_sets), max(width, 1)), pad, dtype=torch.long)
    for row, items in enumerate(item_sets):
        padded[row, : len(items)] = torch.as_tensor(items, dtype=torch.long)
    return padded


def exclude_items(logits: torch.Tensor, item_sets: list[list[int]]) -> torch.Tensor:
    """Set each row's scores of its own ``item_sets`` items to -inf, in place (a top-k then never returns them)."""
    seen = pad_item_sets(item_sets).to(logits.device)
    rows = torch.arange(len(item_sets), device=logits.device)[:, None].expand_as(seen)
    logits[rows[seen >= 0], seen[seen >= 0]] = -torch.inf
    return logits
