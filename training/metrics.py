"""Full-ranking metrics for leave-one-out evaluation (one held-out item per user).

With a single relevant item, Recall@k is the hit rate and NDCG@k is ``1 / log2(rank + 2)`` when the
item is ranked at 0-based ``rank < k`` (IDCG = 1). Every user counts, including those whose item
was not retrieved at all.
"""

from __future__ import annotations

import torch


def ranking_metrics(ranked: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over users.

    Args:
        ranked: (U, K) item indices, best first (-1 for empty slots).
        targets: (U,) the held-out item of each user.
        ks: cut-offs, each at most K.
    """
    ranked = torch.as_tensor(ranked)
    targets = torch.as_tensor(targets)
    if ranked.dim() != 2 or ranked.size(0) != targets.numel():
        raise ValueError(
            f"ranked must be (users, K) and targets (users,); got {tuple(ranked.shape)} and {tuple(targets.shape)}"
        )
    if max(ks) > ranked.size(1):
        raise ValueError(f"cut-off {max(ks)} exceeds the {ranked.size(1)} ranked items per user")
    hits = ranked == targets.view(-1, 1)
    discounts = 1.0 / torch.log2(torch.arange(ranked.size(1), dtype=torch.float64) + 2.0)
    metrics = {}
    for k in ks:
        top = hits[:, :k].double()
        metrics[f"recall@{k}"] = top.sum(dim=1).mean().item()
        metrics[f"ndcg@{k}"] = (top * discounts[:k]).sum(dim=1).mean().item()
    return metrics
