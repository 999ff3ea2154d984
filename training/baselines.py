"""The popularity baseline: the floor every reported number is compared with."""

from __future__ import annotations

import torch


def popularity_ranking(item_counts: list[int] | torch.Tensor, num_users: int, top_k: int = 20) -> torch.Tensor:
    """(num_users, top_k) ranking of the most interacted-with training items, the same for every user.

    Ties are broken by item index so the baseline is deterministic.
    """
    counts = torch.as_tensor(item_counts, dtype=torch.float64)
    order = torch.argsort(-counts, stable=True)[:top_k]
    return order.unsqueeze(0).expand(num_users, -1).clone()
