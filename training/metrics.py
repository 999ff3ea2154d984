"""Full-ranking metrics: one held-out item per user (leave-one-out) or a held-out set per user.

This is the one implementation of the ranking metrics: ``SIDTrainer.evaluate``, ``evaluate_split``,
the popularity baseline and the ``evaluate`` module in ``metrics/sid_ranking`` all call
:func:`ranking_metrics`, so a number in ``metrics.json`` and one from ``evaluate.load(...)`` agree. The
results harness's paired test reads each user's numbers from :func:`per_user_ranking_metrics`, the step
before the mean, so its per-user measures are these same definitions.

With a held-out set (DMRec's random 3:1:1 split), Recall@k is the share of the user's held-out
items in the top k and NDCG@k divides by the ideal DCG of ``min(k, |held-out|)`` hits, the
definitions of the RLMRec/DMRec evaluation code. With a single relevant item, Recall@k is the hit
rate and NDCG@k is ``1 / log2(rank + 2)`` when the item is ranked at 0-based ``rank < k``
(IDCG = 1). Every user counts, including those whose item was not retrieved at all (they score 0).

- ``recall@k``: relevant items in the top k divided by the number of relevant items (1 here).
- ``hit_rate@k``: fraction of users with at least one relevant item in the top k. It is computed
  on its own rather than copied from recall so that it stays a 0/1 per-user quantity even if a
  ranking ever repeated the target.
- ``mrr@k``: mean of ``1 / (rank + 1)`` of the first relevant item within the top k (0 if none).
- ``ndcg@k``: as above.
- ``coverage@k`` (only when ``num_items`` is given): fraction of the catalogue that appears in
  at least one user's top k. A model can score well by recommending the same popular items to
  everyone; coverage shows that.
"""

from __future__ import annotations

import torch


def ranking_metrics(
    ranked: torch.Tensor,
    targets: torch.Tensor,
    ks: tuple[int, ...] = (5, 10, 20),
    num_items: int | None = None,
) -> dict[str, float]:
    """Mean Recall@k, NDCG@k, MRR@k and HitRate@k over users, plus catalogue coverage@k.

    Args:
        ranked: (U, K) item indices, best first (-1 for empty slots).
        targets: (U,) the held-out item of each user, or (U, T) held-out sets padded with -1.
        ks: cut-offs, each at most K.
        num_items: catalogue size; when given, ``coverage@k`` is reported too and every ranked
            index must be below it.

    Returns:
        ``{"recall@k", "ndcg@k", "mrr@k", "hit_rate@k"[, "coverage@k"]}`` for every k, as floats.
    """
    ranked = torch.as_tensor(ranked)
    targets = torch.as_tensor(targets)
    if ranked.dim() != 2 or targets.dim() not in (1, 2) or ranked.size(0) != targets.size(0):
        raise ValueError(
            "ranked must be (users, K) and targets (users,) or (users, T); "
            f"got {tuple(ranked.shape)} and {tuple(targets.shape)}"
        )
    if max(ks) > ranked.size(1):
        raise ValueError(f"cut-off {max(ks)} exceeds the {ranked.size(1)} ranked items per user")
    if num_items is not None:
        if num_items <= 0:
            raise ValueError(f"num_items must be positive to compute coverage; got {num_items}")
        if ranked.numel() and int(ranked.max()) >= num_items:
            raise ValueError(
                f"ranked holds item index {int(ranked.max())} but num_items is {num_items}; "
                "pass the size of the catalogue the items were ranked from"
            )
    ordered = ranked.sort(dim=1).values  # a repeated item would count one hit several times (recall > 1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        user = int(repeated.any(dim=1).nonzero()[0])
        raise ValueError(
            f"the ranking of user {user} lists an item more than once ({ranked[user].tolist()[:20]}); a ranking "
            "lists each item once: remove the repeats"
        )
    relevant = targets.view(-1, 1) if targets.dim() == 1 else targets  # (U, T), -1 pads
    hits = (ranked[:, :, None] == relevant[:, None, :]).any(dim=2) & (ranked >= 0)
    per_user = per_user_ranking_metrics(hits, (relevant >= 0).sum(dim=1), ks)
    metrics = {}
    for k in ks:
        for name in ("recall", "ndcg", "mrr", "hit_rate"):
            metrics[f"{name}@{k}"] = per_user[f"{name}@{k}"].mean().item()
        if num_items is not None:
            shown = ranked[:, :k]
            metrics[f"coverage@{k}"] = torch.unique(shown[shown >= 0]).numel() / num_items
    return metrics


def per_user_ranking_metrics(
    hits: torch.Tensor, num_relevant: torch.Tensor, ks: tuple[int, ...] = (5, 10, 20)
) -> dict[str, torch.Tensor]:
    """Each user's Recall@k, NDCG@k, MRR@k and HitRate@k, before the mean :func:`ranking_metrics` reports.

    The paired significance test of the results harness (``benchmarks/quality_tables.py``) compares runs
    user by user; it reads these from saved ranks instead of defining the metrics a second time.

    Args:
        hits: (U, K) booleans, True where the item at 0-based position j of user u's ranking is relevant.
        num_relevant: (U,) how many relevant items each user has (1 for leave-one-out), at least 1.
        ks: cut-offs, each at most K.

    Returns:
        ``{"recall@k", "ndcg@k", "mrr@k", "hit_rate@k"}`` for every k, each a (U,) float64 tensor.
    """
    hits = torch.as_tensor(hits, dtype=torch.bool)
    num_relevant = torch.as_tensor(num_relevant).double()
    if hits.dim() != 2 or num_relevant.shape != (hits.size(0),):
        raise ValueError(
            "hits must be (users, K) and num_relevant (users,); "
            f"got {tuple(hits.shape)} and {tuple(num_relevant.shape)}"
        )
    if max(ks) > hits.size(1):
        raise ValueError(f"cut-off {max(ks)} exceeds the {hits.size(1)} ranked items per user")
    if (num_relevant == 0).any():
        raise ValueError("every user needs at least one relevant item; drop users with an empty held-out set")
    positions = torch.arange(hits.size(1), dtype=torch.float64)
    discounts = 1.0 / torch.log2(positions + 2.0)
    reciprocal_ranks = 1.0 / (positions + 1.0)
    # Position of each user's first hit (K when there is none), for MRR.
    first_hit = torch.where(
        hits.any(dim=1), hits.double().argmax(dim=1), torch.full_like(num_relevant, hits.size(1)).long()
    )
    per_user = {}
    for k in ks:
        top = hits[:, :k].double()
        per_user[f"recall@{k}"] = top.sum(dim=1) / num_relevant
        ideal = torch.cumsum(discounts[:k], dim=0)[num_relevant.clamp(max=k).long() - 1]
        per_user[f"ndcg@{k}"] = (top * discounts[:k]).sum(dim=1) / ideal
        found = first_hit < k
        mrr = torch.zeros(hits.size(0), dtype=torch.float64)
        mrr[found] = reciprocal_ranks[first_hit[found]]
        per_user[f"mrr@{k}"] = mrr
        per_user[f"hit_rate@{k}"] = found.double()
    return per_user
