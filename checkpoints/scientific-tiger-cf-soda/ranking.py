"""The ranker contract and the rankers that serve a saved sequential model: histories in, top-k out.

Every model that ranks items answers through a :class:`Ranker` (in the spirit of RecBole's
``full_sort_predict``): ``rank(rows, top_k) -> Recommendations``, where ``rows`` are a split's columns
(``history`` and ``user`` for the sequential task, ``items`` for item sets). The two sequential rankers
live here, in the Hub-portable folder, because serving needs them where sidrec is not installed: the
``sequential-recommendation`` pipeline saved beside a model ranks through them, as evaluation
(``training/ranking.py``) and ``sidrec.Recommender`` do, so all three give the same items and scores.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers.utils.logging import tqdm

from .outputs import Recommendations

Rows = dict[str, list[Any]]


class Ranker(Protocol):
    """Anything that ranks the catalogue for a batch of users."""

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        """(U, top_k) item indices (best first) and their scores for the users in ``rows``."""


class GenerativeRanker:
    """SID-T5 (TIGER, DIGER, SODA) or DMRec-T5: trie-constrained beam search over the full catalogue."""

    def __init__(
        self,
        model,
        tokenizer,
        num_beams: int = 20,
        batch_size: int = 256,
        progress: bool = False,
        description: str = "ranking",
    ):
        self.model, self.tokenizer = model, tokenizer
        self.num_beams, self.batch_size = num_beams, batch_size
        self.progress, self.description = progress, description  # the progress bar and its label

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        histories, users = rows["history"], rows.get("user")
        items, scores = [], []
        starts = range(0, len(histories), self.batch_size)
        for start in tqdm(starts, desc=self.description, disable=not self.progress, leave=False):
            result = self.model.recommend(
                histories[start : start + self.batch_size],
                self.tokenizer,
                top_k=top_k,
                num_beams=self.num_beams,
                users=users[start : start + self.batch_size] if users is not None else None,
            )  # the model picks its own forward-pass size inside each chunk (smaller on CPU)
            items.append(result.items)
            scores.append(result.scores)
        return Recommendations(items=torch.cat(items), scores=torch.cat(scores))


class SequenceRanker:
    """SASRec: the last position's state scored against every item.

    History items stay candidates unless ``exclude_history`` (``evaluation.exclude_history``): that is the
    protocol of some published SASRec numbers, so the option lets sidrec's floor be read beside them.
    """

    def __init__(self, model, batch_size: int = 256, exclude_history: bool = False):
        self.model, self.batch_size, self.exclude_history = model, batch_size, exclude_history

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        return self.model.recommend(
            rows["history"], top_k=top_k, batch_size=self.batch_size, exclude_history=self.exclude_history
        )
