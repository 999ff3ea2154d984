"""One ranker contract: a batch of users in, top-k item indices and scores out.

Every model that ranks items answers through a :class:`Ranker` (in the spirit of RecBole's
``full_sort_predict``): ``rank(rows, top_k) -> Recommendations``, where ``rows`` are a split's
columns (``history`` and ``user`` for the sequential task, ``items`` for item sets). One
evaluation (:func:`evaluate_ranker`), one ``Trainer`` (``SIDTrainer``) and one pipeline then serve
SID-T5 and its variants, SASRec, Mult-VAE and popularity alike. The targets come from the rows too: the
leave-one-out ``target`` column, or the ``held_out`` item sets of DMRec's 3:1:1 split.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ..modeling.modeling_mult_vae import pad_item_sets
from ..modeling.modeling_sid_t5 import Recommendations
from .metrics import ranking_metrics

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


class ItemSetRanker:
    """Mult-VAE: every item the user did not train on, scored by the decoder's logits."""

    def __init__(self, model, batch_size: int = 1024):
        self.model, self.batch_size = model, batch_size

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        return self.model.recommend(rows["items"], top_k=top_k, batch_size=self.batch_size)


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


class PopularityRanker:
    """The floor: the most interacted-with training items, the same list for every user.

    Ties are broken by item index so the baseline is deterministic.
    """

    def __init__(self, item_counts: list[int] | torch.Tensor):
        self.counts = torch.as_tensor(item_counts, dtype=torch.float64)

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        num_users = len(next(iter(rows.values())))
        order = torch.argsort(-self.counts, stable=True)[:top_k]
        return Recommendations(
            items=order.unsqueeze(0).expand(num_users, -1).clone(),
            scores=self.counts[order].unsqueeze(0).expand(num_users, -1).clone(),
        )


def ranking_targets(rows: Rows) -> torch.Tensor:
    """(U,) leave-one-out targets, or (U, T) held-out item sets padded with -1."""
    if "held_out" in rows:
        return pad_item_sets(rows["held_out"])
    return torch.tensor(rows["target"])


def score_rankings(ranked: torch.Tensor, rows: Rows, ks: tuple[int, ...], num_items: int | None) -> dict[str, float]:
    """Recall/NDCG/MRR/HitRate@ks of ``ranked`` against the rows' targets.

    Catalogue coverage is reported for item-set evaluation (``num_items`` given there), as DMRec's
    tables do; the leave-one-out numbers stay the ones every earlier run reported. A ranker can return
    fewer items than the largest cut-off only when the catalogue holds fewer (four items, k = 10): the
    missing slots are empty, so Recall@10 is then Recall@4.
    """
    ranked = torch.as_tensor(ranked)
    if ranked.dim() == 2 and ranked.size(1) < max(ks):  # a catalogue smaller than the largest cut-off: empty slots
        ranked = torch.nn.functional.pad(ranked, (0, max(ks) - ranked.size(1)), value=-1)
    return ranking_metrics(ranked, ranking_targets(rows), ks, num_items=num_items if "held_out" in rows else None)


def evaluate_ranker(
    ranker: Ranker, split, ks: tuple[int, ...] = (5, 10, 20), num_items: int | None = None
) -> dict[str, float]:
    """Recall/NDCG@ks of any ranker on a validation or test split (a ``datasets.Dataset`` or its columns)."""
    rows = split if isinstance(split, dict) else split.to_dict()
    return score_rankings(ranker.rank(rows, max(ks)).items, rows, tuple(ks), num_items)


def rank_users(
    model,
    tokenizer,
    histories: list[list[int]],
    users: list[int] | None = None,
    top_k: int = 20,
    num_beams: int = 20,
    batch_size: int = 256,
    progress: bool = True,
) -> torch.LongTensor:
    """(U, top_k) items per user from a generative model's trie-constrained beam search."""
    rows = {"history": histories} | ({"user": users} if users is not None else {})
    return GenerativeRanker(model, tokenizer, num_beams, batch_size, progress).rank(rows, top_k).items


def evaluate_split(
    model, tokenizer, split, ks=(5, 10, 20), num_beams=20, batch_size=256, max_users=None, progress=True
):
    """Recall/NDCG@ks of a generative model on a split (columns user, history, target).

    ``max_users`` evaluates the first users only: a cheaper signal for early stopping; final numbers
    always use every user.
    """
    if max_users is not None:
        split = split.select(range(min(max_users, len(split))))
    return evaluate_ranker(GenerativeRanker(model, tokenizer, num_beams, batch_size, progress), split, tuple(ks))
