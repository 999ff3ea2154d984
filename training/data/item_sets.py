"""Item-set data: DMRec's random 3:1:1 split of each user's items and the Mult-VAE batches.

The paper evaluates on RLMRec's splits: each user's interactions are shuffled and cut into
train / validation / test in the ratio 3:1:1, and every item the user did not train on is a
candidate (Recall/NDCG@20). This module builds that split from any data set the sequential
loader reads, and the collator that batches its rows.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from ...modeling.modeling_mult_vae import pad_item_sets


def random_split(item_sets: list[list[int]], ratios: tuple[int, int, int] = (3, 1, 1), seed: int = 42) -> DatasetDict:
    """Each user's items shuffled (seeded) and cut ``ratios`` into train / validation / test.

    Validation and test get ``round(n * share)`` items each, at least one; train keeps the rest,
    which is at least one as long as a user has three items (the loaders guarantee it). Rows are
    ``(user, items, held_out)``: ``items`` the training items (the model's input), ``held_out`` the
    split's own items. Train rows hold the training items in both.
    """
    if len(ratios) != 3 or min(ratios) <= 0:
        raise ValueError(f"split ratios must be three positive numbers (train, validation, test), got {ratios}")
    total = float(sum(ratios))
    rng = np.random.default_rng(seed)
    columns = {name: {"user": [], "items": [], "held_out": []} for name in ("train", "validation", "test")}
    for user, items in enumerate(item_sets):
        if len(items) < 3:
            raise ValueError(f"user {user} has {len(items)} items; a 3-way split needs at least 3 per user")
        shuffled = rng.permutation(np.asarray(items, dtype=np.int64)).tolist()
        num_test = max(1, round(len(items) * ratios[2] / total))
        num_validation = max(1, round(len(items) * ratios[1] / total))
        num_test = min(num_test, len(items) - 2)
        num_validation = min(num_validation, len(items) - num_test - 1)
        train = shuffled[: len(items) - num_test - num_validation]
        parts = {
            "train": train,
            "validation": shuffled[len(train) : len(train) + num_validation],
            "test": shuffled[len(train) + num_validation :],
        }
        for name, held_out in parts.items():
            columns[name]["user"].append(user)
            columns[name]["items"].append(train)
            columns[name]["held_out"].append(held_out)
    return DatasetDict({name: Dataset.from_dict(values) for name, values in columns.items()})


class ItemSetCollator:
    """Rows of ``(user, items, ...)`` -> ``item_ids`` (B, N) padded with -1 (Mult-VAE's input)."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return {"item_ids": pad_item_sets([row["items"] for row in rows])}
