"""Ranking metrics against values computed by hand, and the popularity floor."""

from __future__ import annotations

import math

import pytest
import torch

from sidrec.training.metrics import per_user_ranking_metrics, ranking_metrics
from sidrec.training.ranking import PopularityRanker


def test_recall_and_ndcg_by_hand():
    ranked = torch.tensor([[7, 3, 9, 1], [2, 5, 8, 6], [4, 0, 1, 3]])
    targets = torch.tensor([3, 6, 11])  # ranks 1 and 3 (0-based), the third user misses
    metrics = ranking_metrics(ranked, targets, ks=(1, 2, 4))
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@2"] == pytest.approx(1 / 3)
    assert metrics["recall@4"] == pytest.approx(2 / 3)
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)
    assert metrics["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 3)


def test_cutoff_beyond_ranking_is_an_error():
    with pytest.raises(ValueError, match="exceeds"):
        ranking_metrics(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long), ks=(10,))


def test_per_user_metrics_by_hand_are_what_ranking_metrics_averages():
    # The results harness's paired test reads these per-user values from saved ranks.
    ranked = torch.tensor([[7, 3, 9, 1], [2, 5, 8, 6], [4, 0, 1, -1]])
    targets = torch.tensor([3, 6, 11])  # ranks 1 and 3 (0-based), the third user misses
    per_user = per_user_ranking_metrics(ranked == targets[:, None], torch.ones(3), ks=(2, 4))
    assert per_user["recall@2"].tolist() == [1.0, 0.0, 0.0]
    assert per_user["recall@4"].tolist() == [1.0, 1.0, 0.0]
    assert per_user["ndcg@4"].tolist() == pytest.approx([1 / math.log2(3), 1 / math.log2(5), 0.0])
    assert per_user["mrr@4"].tolist() == [0.5, 0.25, 0.0]
    means = {name: values.mean().item() for name, values in per_user.items()}
    assert means == ranking_metrics(ranked, targets, ks=(2, 4))


def test_per_user_metrics_refuse_mismatched_shapes_and_users_without_relevant_items():
    with pytest.raises(ValueError, match=r"num_relevant \(users,\); got \(3, 4\) and \(2,\)"):
        per_user_ranking_metrics(torch.zeros(3, 4, dtype=torch.bool), torch.ones(2), ks=(4,))
    with pytest.raises(ValueError, match="every user needs at least one relevant item"):
        per_user_ranking_metrics(torch.zeros(2, 4, dtype=torch.bool), torch.tensor([1, 0]), ks=(4,))


def test_popularity_ranking_orders_by_count_and_breaks_ties_by_index():
    ranked = PopularityRanker([3, 9, 3, 0, 5]).rank({"history": [[0], [2]]}, top_k=4)
    assert ranked.items.tolist() == [[1, 4, 0, 2], [1, 4, 0, 2]]
    assert ranked.scores.tolist() == [[9, 5, 3, 3], [9, 5, 3, 3]]


def test_mrr_hit_rate_and_coverage_by_hand():
    # Catalogue of 12 items; user 0 finds its item at rank 1, user 1 at rank 3, user 2 never.
    ranked = torch.tensor([[7, 3, 9, 1], [2, 5, 8, 6], [4, 0, 1, -1]])
    targets = torch.tensor([3, 6, 11])
    metrics = ranking_metrics(ranked, targets, ks=(1, 2, 4), num_items=12)
    assert metrics["mrr@1"] == 0.0
    assert metrics["mrr@2"] == pytest.approx((1 / 2) / 3)
    assert metrics["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 3)
    assert metrics["hit_rate@1"] == 0.0
    assert metrics["hit_rate@2"] == pytest.approx(1 / 3)
    assert metrics["hit_rate@4"] == pytest.approx(2 / 3)
    assert metrics["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 3)
    # top-1 shows {7, 2, 4}; top-2 adds {3, 5, 0}; top-4 adds {9, 1, 8, 6} (1 twice, -1 is an empty slot)
    assert metrics["coverage@1"] == pytest.approx(3 / 12)
    assert metrics["coverage@2"] == pytest.approx(6 / 12)
    assert metrics["coverage@4"] == pytest.approx(10 / 12)


def test_a_ranking_that_repeats_an_item_is_refused_not_counted_twice():
    """[5, 2, 5] against target 5 once gave recall@3 = 2.0; a ranking lists each item once, so it is an error."""
    with pytest.raises(ValueError, match="lists an item more than once"):
        ranking_metrics(torch.tensor([[5, 2, 5]]), torch.tensor([5]), ks=(3,))
    # Empty slots (-1) may repeat: they are no item.
    assert ranking_metrics(torch.tensor([[5, -1, -1]]), torch.tensor([5]), ks=(3,))["recall@3"] == 1.0


def test_coverage_only_with_num_items_and_keys_unchanged():
    ranked, targets = torch.tensor([[1, 2], [2, 0]]), torch.tensor([2, 2])
    assert list(ranking_metrics(ranked, targets, ks=(1, 2))) == [
        "recall@1",
        "ndcg@1",
        "mrr@1",
        "hit_rate@1",
        "recall@2",
        "ndcg@2",
        "mrr@2",
        "hit_rate@2",
    ]
    with pytest.raises(ValueError, match="num_items is 2"):
        ranking_metrics(ranked, targets, ks=(1,), num_items=2)


def test_evaluate_module_gives_the_same_numbers_as_ranking_metrics(tiny_model, tokenizer, scientific):
    """``evaluate.load(<repo>/metrics/sid_ranking)`` on a real ranking of 50 validation users == ranking_metrics."""
    import evaluate

    from sidrec.training.ranking import rank_users

    from .conftest import ROOT

    validation = scientific.splits["validation"].select(range(50))
    ranked = rank_users(tiny_model, tokenizer, validation["history"], users=validation["user"], progress=False)
    targets = torch.tensor(validation["target"])
    expected = ranking_metrics(ranked, targets, ks=(5, 10, 20), num_items=tokenizer.num_items)

    metric = evaluate.load(str(ROOT / "metrics" / "sid_ranking"))
    got = metric.compute(
        predictions=ranked.tolist(), references=targets.tolist(), ks=[5, 10, 20], num_items=tokenizer.num_items
    )
    assert got == expected
    assert set(got) == {
        f"{name}@{k}" for name in ("recall", "ndcg", "mrr", "hit_rate", "coverage") for k in (5, 10, 20)
    }
    assert got["coverage@20"] > got["coverage@5"] > 0
