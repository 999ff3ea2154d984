"""Operations on a catalogue's code table (N items x L levels): collisions and usage statistics."""

from __future__ import annotations

import math

import torch


def append_collision_level(codes: torch.LongTensor, max_group_size: int) -> torch.LongTensor:
    """Append TIGER's extra level that numbers the items inside each group of identical codes.

    Items with a unique code get 0; the k-th item (in catalogue order) of a group sharing a code gets
    k. The result has L + 1 columns and every row is unique.

    Raises:
        ValueError: when a group is larger than ``max_group_size`` (the collision level's vocabulary).
    """
    if codes.dim() != 2 or codes.size(0) == 0:
        raise ValueError(f"codes must be a non-empty (N, L) tensor, got shape {tuple(codes.shape)}")
    _, group = torch.unique(codes, dim=0, return_inverse=True)
    order = torch.argsort(group, stable=True)
    sorted_group = group[order]
    starts = torch.ones_like(sorted_group, dtype=torch.bool)
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    first_index = torch.cummax(torch.where(starts, torch.arange(len(order)), 0), dim=0).values
    rank_sorted = torch.arange(len(order)) - first_index
    rank = torch.empty_like(rank_sorted).scatter_(0, order, rank_sorted)
    largest = int(rank.max()) + 1
    if largest > max_group_size:
        raise ValueError(
            f"{largest} items share one semantic ID, more than the {max_group_size} codes of the collision "
            "level. Use more levels or a larger codebook_size, or train the quantizer longer."
        )
    return torch.cat([codes, rank[:, None]], dim=1)


def code_statistics(codes: torch.LongTensor, codebook_size: int) -> dict[str, float]:
    """Per-level usage (fraction of codes used) and perplexity, plus the collision rate.

    ``codes`` are the quantizer's levels, without the collision level. Perplexity is
    ``exp(entropy)`` of the level's code frequencies: ``codebook_size`` when usage is uniform, 1 when
    every item shares one code. Collision rate = fraction of items whose full code is shared.
    """
    stats: dict[str, float] = {}
    for level in range(codes.size(1)):
        counts = torch.bincount(codes[:, level], minlength=codebook_size).double()
        freq = counts / counts.sum()
        entropy = -(freq[freq > 0] * freq[freq > 0].log()).sum().item()
        stats[f"level{level}/usage"] = (counts > 0).double().mean().item()
        stats[f"level{level}/perplexity"] = math.exp(entropy)
    _, group, group_sizes = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    stats["collision_rate"] = (group_sizes[group] > 1).double().mean().item()
    stats["max_items_per_code"] = float(group_sizes.max().item())
    stats["unique_codes"] = float(group_sizes.numel())
    return stats


def code_churn(previous: torch.LongTensor, current: torch.LongTensor) -> dict[str, float]:
    """Share of items whose code changed between two tables (N, L) of the same catalogue.

    Per level: the share of items whose code at that level differs (``level{l}``); ``any``: the share
    whose semantic ID changed at some level. Re-assigned codes make the recommender's code embeddings
    stale for exactly these items (README, "DIGER"), which is why joint training logs it.
    """
    if previous.shape != current.shape:
        raise ValueError(f"code tables differ in shape: {tuple(previous.shape)} vs {tuple(current.shape)}")
    changed = previous != current
    churn = {f"level{level}": changed[:, level].double().mean().item() for level in range(changed.size(1))}
    churn["any"] = changed.any(dim=1).double().mean().item()
    return churn
