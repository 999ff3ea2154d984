"""Batching: rows of (user, history, target) item indices -> SID-T5 inputs and labels."""

from __future__ import annotations

from typing import Any

import torch


class SemanticIDCollator:
    """Turn data-set rows into ``input_ids``, ``attention_mask`` and ``labels`` with the tokenizer.

    Tokenising in the collator (not in ``datasets.map``) keeps the data set in item indices, so
    that re-assigned codes (DIGER) take effect in the very next batch. ``target_items`` (B,) is
    always added; with ``item_index=True`` so is ``item_index`` (B, S), the item behind each code
    token, which joint training needs to put freshly assigned codes in place; with
    ``num_negatives`` > 0, ``negative_items`` (B, N) sampled from the catalogue (seeded).
    """

    def __init__(self, tokenizer, item_index: bool = False, num_negatives: int = 0, seed: int = 0):
        self.tokenizer = tokenizer
        self.item_index = item_index
        self.num_negatives = num_negatives
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        histories = [row["history"] for row in rows]
        users = [row["user"] for row in rows] if "user" in rows[0] else None
        batch = self.tokenizer.encode_histories(histories, users=users, return_item_index=self.item_index)
        targets = [row["target"] for row in rows]
        target_items = torch.tensor(targets, dtype=torch.long)
        columns = {**batch, "labels": self.tokenizer.encode_targets(targets), "target_items": target_items}
        if self.num_negatives:
            columns["negative_items"] = self.sample_negatives(target_items)
        return columns

    def sample_negatives(self, target_items: torch.LongTensor) -> torch.LongTensor:
        """(B, num_negatives) catalogue items drawn uniformly, never the row's own target (SODA's negatives)."""
        size = (len(target_items), self.num_negatives)
        # Draw from the catalogue minus one item, then skip over the target: uniform over the other items.
        draws = torch.randint(0, self.tokenizer.num_items - 1, size, generator=self.generator)
        return draws + (draws >= target_items[:, None]).long()


class NextItemCollator:
    """Rows of ``(history, target)`` -> SASRec's right-padded ``input_ids`` and per-position ``labels``.

    Position t reads items 0..t of the history and is trained to predict item t + 1 (the last one:
    the row's target), so one row of a user's full training sequence supervises every step, as
    SASRec trains. Ids are item index + 1 (0 is padding); labels are item indices, -100 where unused.
    """

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [(row["history"] + [row["target"]])[-(self.max_length + 1) :] for row in rows]
        width = max(len(sequence) - 1 for sequence in sequences)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            items = torch.as_tensor(sequence, dtype=torch.long)
            input_ids[row, : len(items) - 1] = items[:-1] + 1
            labels[row, : len(items) - 1] = items[1:]
        return {"input_ids": input_ids, "labels": labels}
