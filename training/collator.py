"""Batching: rows of (user, history, target) item indices -> SID-T5 inputs and labels."""

from __future__ import annotations

from typing import Any

import torch


class SemanticIDCollator:
    """Turn data-set rows into ``input_ids``, ``attention_mask`` and ``labels`` with the tokenizer.

    Tokenising in the collator (not in ``datasets.map``) keeps the data set in item indices, so
    that re-assigned codes (DIGER) take effect in the very next batch.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        histories = [row["history"] for row in rows]
        users = [row["user"] for row in rows] if "user" in rows[0] else None
        batch = self.tokenizer.encode_histories(histories, users=users)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": self.tokenizer.encode_targets([row["target"] for row in rows]),
            "target_items": torch.tensor([row["target"] for row in rows], dtype=torch.long),
        }
