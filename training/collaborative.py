"""DMRec's own setting: Mult-VAE on item sets, a random 3:1:1 split per user, full ranking.

The paper evaluates on RLMRec's splits: each user's interactions are shuffled and cut into
train / validation / test in the ratio 3:1:1, and every item the user did not train on is a
candidate (Recall/NDCG@20). This module builds that split from any data set the sequential
loader reads, the batches, and a ``Trainer`` whose evaluation ranks the whole catalogue.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import gather_object
from datasets import Dataset, DatasetDict

from ..modeling.modeling_mult_vae import pad_item_sets
from .metrics import ranking_metrics
from .trainer import ObjectiveTrainer


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


def rank_item_sets(model, dataset: Dataset, top_k: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, top_k) rankings of every item the user did not train on, and (U, T) held-out sets."""
    ranked = model.recommend(dataset["items"], top_k=top_k, batch_size=batch_size)
    return ranked, pad_item_sets(dataset["held_out"])


class CollaborativeTrainer(ObjectiveTrainer):
    """The objectives trainer with full-ranking evaluation over all items a user did not train on.

    ``evaluate`` reports Recall/NDCG/MRR/HitRate@k against each user's held-out set (validation
    during training, test at the end), so ``metric_for_best_model="recall@20"`` and early
    stopping work unchanged; under ``accelerate launch`` the users are split between processes.
    """

    def __init__(self, *args, ranking_ks: tuple[int, ...] = (5, 10, 20), **kwargs):
        super().__init__(*args, **kwargs)
        self.ranking_ks = tuple(ranking_ks)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("CollaborativeTrainer.evaluate needs an evaluation split (eval_dataset)")
        model = self.accelerator.unwrap_model(self.model)
        with self.accelerator.split_between_processes(list(range(len(dataset)))) as mine:
            ranked, held_out = rank_item_sets(
                model, dataset.select(mine), max(self.ranking_ks), self.args.per_device_eval_batch_size
            )
        if self.accelerator.num_processes > 1:
            ranked = torch.cat(gather_object([ranked]))
            held_out = pad_item_sets([row[row >= 0].tolist() for part in gather_object([held_out]) for row in part])
        metrics = ranking_metrics(ranked, held_out, self.ranking_ks, num_items=model.config.num_items)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        metrics[f"{metric_key_prefix}_users"] = len(dataset)
        self.log(dict(metrics))
        if metric_key_prefix == "eval":
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
