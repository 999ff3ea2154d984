"""Balanced code assignment: centred distances and Sinkhorn-Knopp transport plans.

Nearest-code assignment lets a few codes take most items (the collisions the tokenizer then has to
number). The DIGER and LETTER reference code balances each batch instead: it min-max centres the
batch's distances into [-1, 1] and solves an entropic optimal-transport problem in which every
item carries mass ``1/B`` and every code receives mass ``1/K``; an item's code is the argmax of its
row of the plan. With a small ``epsilon`` (0.003 in both papers) the plan approaches the cheapest
assignment that uses every code equally often.

The reference code exponentiates ``-d / epsilon`` directly (in float64, since ``exp(333)`` overflows
float32); here the same iterations run on log-potentials, which gives the same plan in any dtype.
"""

from __future__ import annotations

import torch


def centre_distances(distances: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Map a batch's distances (B, K) linearly into [-1, 1] using the batch's smallest and largest entry.

    ``eps`` keeps the division finite when every distance is equal (then all entries map to 0).
    """
    low, high = distances.min(), distances.max()
    middle = (high + low) / 2
    return (distances - middle) / (high - middle + eps)


@torch.no_grad()
def sinkhorn_plan(costs: torch.Tensor, epsilon: float = 0.003, iterations: int = 50) -> torch.Tensor:
    """Entropic transport plan (B, K) of ``costs`` with uniform marginals: rows sum to 1, columns to B/K.

    Alternates the two marginal constraints ``iterations`` times, starting from ``exp(-costs / epsilon)``
    normalised to total mass 1, as Sinkhorn-Knopp does; computed in the log domain. The plan is
    returned scaled so that each row (item) sums to one, an assignment distribution over codes.
    """
    if epsilon <= 0:
        raise ValueError(f"sinkhorn epsilon must be > 0, got {epsilon}")
    num_items, num_codes = costs.shape
    log_plan = -costs.double() / epsilon
    log_plan = log_plan - torch.logsumexp(log_plan.flatten(), dim=0)
    log_items, log_codes = -torch.log(torch.tensor(float(num_items))), -torch.log(torch.tensor(float(num_codes)))
    for _ in range(iterations):
        log_plan = log_plan - torch.logsumexp(log_plan, dim=0, keepdim=True) + log_codes  # each code: mass 1/K
        log_plan = log_plan - torch.logsumexp(log_plan, dim=1, keepdim=True) + log_items  # each item: mass 1/B
    return (log_plan + torch.log(torch.tensor(float(num_items)))).exp().to(costs.dtype)


def balanced_codes(distances: torch.Tensor, epsilon: float = 0.003, iterations: int = 50) -> torch.LongTensor:
    """Each item's code (B,) under the Sinkhorn plan of its batch's centred distances (B, K)."""
    return sinkhorn_plan(centre_distances(distances.detach()), epsilon, iterations).argmax(dim=-1)
