"""sid_ranking: full-ranking recommendation metrics as an `evaluate` module.

A thin wrapper: ``_compute`` calls ``sidrec.training.metrics.ranking_metrics``, the function the
trainer's evaluation uses, so numbers from ``evaluate.load(".../metrics/sid_ranking")`` are the
numbers in a run's ``metrics.json`` (there is no second implementation to drift). Loading the
module from its directory needs no network; it does need ``sidrec`` installed.
"""

from __future__ import annotations

import datasets
import evaluate
import torch

from sidrec.modeling.input_checks import check_count, check_ranked_list, is_exact_int
from sidrec.training.metrics import ranking_metrics

_DESCRIPTION = """
Recall@k, NDCG@k, MRR@k and HitRate@k of ranked recommendation lists against one held-out item
per user (chronological leave-one-out, full ranking over the catalogue), and, when the catalogue
size is given, coverage@k: the fraction of the catalogue that appears in at least one user's top k.
Users whose item is not ranked count as misses.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): per user, item indices best first, each item at most
        once (a list that repeats an item is refused: it would count one hit several times). Lists
        may be shorter than the largest cut-off: ragged lists are padded with -1 (empty slot) here.
    references (`list` of `int`): per user, the held-out item index.
    ks (`tuple` of `int`, defaults to (5, 10, 20)): cut-offs, each at most the list length.
    num_items (`int`, optional): catalogue size; when given, `coverage@k` is reported.

Returns:
    dict with `recall@k`, `ndcg@k`, `mrr@k`, `hit_rate@k` (and `coverage@k`) for every k.

Examples:
    >>> metric = evaluate.load("metrics/sid_ranking")
    >>> metric.compute(predictions=[[3, 1], [0, 2]], references=[1, 5], ks=[1, 2], num_items=6)
    {'recall@1': 0.0, 'ndcg@1': 0.0, 'mrr@1': 0.0, 'hit_rate@1': 0.0, 'coverage@1': 0.3333333333333333, \
'recall@2': 0.5, 'ndcg@2': 0.31546487678572877, 'mrr@2': 0.25, 'hit_rate@2': 0.5, 'coverage@2': 0.6666666666666666}
"""

_CITATION = """
@inproceedings{rajput2023tiger,
  title = {Recommender Systems with Generative Retrieval},
  author = {Rajput, Shashank and others},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2023}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SidRanking(evaluate.Metric):
    """Ranking metrics for generative (semantic-ID) recommenders, computed by sidrec's one implementation."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    # ``evaluate`` casts inputs to the features' int64 before ``_compute`` sees them (1.5 would become 1), so
    # every way in checks the raw values first.
    def compute(self, *, predictions=None, references=None, **kwargs):
        """``evaluate.Metric.compute`` after checking the raw predictions and references (see ``_check_inputs``)."""
        if predictions is not None or references is not None:
            _check_inputs(predictions, references)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """``evaluate.Metric.add_batch`` after checking the raw values."""
        _check_inputs(predictions, references)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """``evaluate.Metric.add`` after checking the raw values."""
        _check_inputs([prediction], [reference])
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(
        self,
        predictions: list[list[int]],
        references: list[int],
        ks: tuple[int, ...] | list[int] = (5, 10, 20),
        num_items: int | None = None,
    ) -> dict[str, float]:
        rows = _check_inputs(predictions, references)
        ks = tuple(check_count(k, "each cut-off in ks", "items") for k in ks)
        if num_items is not None:
            num_items = check_count(num_items, "num_items", "items")
        width = max(max(len(row) for row in rows), 1)
        ranked = torch.full((len(rows), width), -1, dtype=torch.long)
        for user, row in enumerate(rows):  # pad ragged lists with empty slots (-1)
            ranked[user, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        targets = torch.as_tensor([int(reference) for reference in references], dtype=torch.long)
        return ranking_metrics(ranked, targets, ks, num_items=num_items)


def _check_inputs(predictions, references) -> list[list[int]]:
    """Each ranked list as exact integers without repeats, each reference one item index; the lists checked."""
    if predictions is None or len(predictions) == 0:
        raise ValueError("no predictions: pass one ranked list of item indices per user")
    if references is None or len(references) != len(predictions):
        count = "no" if references is None else len(references)
        raise ValueError(f"got {len(predictions)} ranked lists and {count} references: pass one reference per user")
    rows = [check_ranked_list(row, f"predictions[{user}]") for user, row in enumerate(predictions)]
    for user, reference in enumerate(references):
        if not is_exact_int(reference) or int(reference) < 0:
            raise ValueError(f"references[{user}] = {reference!r}: a reference is one item index (an int >= 0)")
    return rows
