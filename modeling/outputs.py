"""What every ranker returns: top-k item indices and their scores (one type for every model)."""

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
