"""Ranking metrics against values computed by hand, and the popularity floor."""

from __future__ import annotations

import math

import pytest
import torch

from sidrec.training.baselines import popularity_ranking
from sidrec.training.metrics import ranking_metrics


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


def test_popularity_ranking_orders_by_count_and_breaks_ties_by_index():
    ranked = popularity_ranking([3, 9, 3, 0, 5], num_users=2, top_k=4)
    assert ranked.tolist() == [[1, 4, 0, 2], [1, 4, 0, 2]]
