"""Batching: rows of (user, history, target) item indices -> SID-T5 inputs and labels."""

from __future__ import annotations

from typing import Any

import torch


class SemanticIDCollator:
    """Turn data-set rows into ``input_ids``, ``attention_mask`` and ``labels`` with the tokenizer.

    Tokenising in the collator (not in ``datasets.map``) keeps the data set in item indices, so
    that re-assigned codes (DIGER) take effect in the very next batch. ``target_items`` (B,) is
    always added; with ``item_index=True`` so is ``item_index`` (B, S), the item behind each code
    token, which joint training needs to put freshly assigned codes in place.
    """

    def __init__(self, tokenizer, item_index: bool = False):
        self.tokenizer = tokenizer
        self.item_index = item_index

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        histories = [row["history"] for row in rows]
        users = [row["user"] for row in rows] if "user" in rows[0] else None
        batch = self.tokenizer.encode_histories(histories, users=users, return_item_index=self.item_index)
        targets = [row["target"] for row in rows]
        return {
            **batch,
            "labels": self.tokenizer.encode_targets(targets),
            "target_items": torch.tensor(targets, dtype=torch.long),
        }
