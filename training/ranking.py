"""One ranker contract: a batch of users in, top-k item indices and scores out.

Every model that ranks items answers through a :class:`Ranker` (in the spirit of RecBole's
``full_sort_predict``): ``rank(rows, top_k) -> Recommendations``, where ``rows`` are a split's
columns (``history`` and ``user`` for the sequential task, ``items`` for item sets). One
evaluation (:func:`evaluate_ranker`), one ``Trainer`` (``SIDTrainer``) and one pipeline then serve
SID-T5 and its variants, SASRec, Mult-VAE and popularity alike. The targets come from the rows too: the
leave-one-out ``target`` column, or the ``held_out`` item sets of DMRec's 3:1:1 split.

The contract and the two sequential rankers (``GenerativeRanker``, ``SequenceRanker``) live in the
Hub-portable ``modeling/ranking.py``, since a saved model's ``sequential-recommendation`` pipeline ranks
through them where sidrec is not installed; this module adds the training-side rankers and the evaluation.
"""

from __future__ import annotations

import torch

from ..modeling.modeling_mult_vae import pad_item_sets
from ..modeling.modeling_sid_t5 import Recommendations
from ..modeling.ranking import GenerativeRanker, Ranker, Rows, SequenceRanker
from .metrics import ranking_metrics

__all__ = [
    "GenerativeRanker",
    "ItemSetRanker",
    "PopularityRanker",
    "Ranker",
    "Rows",
    "SequenceRanker",
    "evaluate_ranker",
    "evaluate_split",
    "rank_users",
    "ranking_targets",
    "score_rankings",
]


class ItemSetRanker:
    """Mult-VAE: every item the user did not train on, scored by the decoder's logits."""

    def __init__(self, model, batch_size: int = 1024):
        self.model, self.batch_size = model, batch_size

    def rank(self, rows: Rows, top_k: int) -> Recommendations:
        return self.model.recommend(rows["items"], top_k=top_k, batch_size=self.batch_size)


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
