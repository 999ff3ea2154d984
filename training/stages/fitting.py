"""Training: ``TrainingArguments`` from the recipe, and the one ``SIDTrainer`` every task uses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from ..recipe import Recipe


def training_arguments(recipe: Recipe, output_dir: Path, overrides: dict[str, Any] | None = None) -> TrainingArguments:
    """``TrainingArguments`` from the recipe; evaluation and saving share one schedule (best model kept)."""
    t = recipe.training
    strategy = "steps" if t.eval_steps else "epoch"
    values = dict(
        output_dir=str(output_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=recipe.evaluation.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler_type,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps,
        save_steps=t.eval_steps,
        logging_steps=t.logging_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        greater_is_better=True,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        report_to="none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    values.update(overrides or {})
    return TrainingArguments(**values)


def with_lengths(split):
    """Add the history length, which ``group_by_length`` batches by to avoid padding short histories."""
    return split.add_column("length", [len(history) for history in split["history"]])


def train_and_test(trainer, test_split) -> tuple[Any, float, dict[str, float], float]:
    """Train (early stopping and best-model loading as the arguments say), then rank the test users.

    Returns the ``TrainOutput``, the training seconds, the test metrics (``test_*`` keys) and the
    test seconds.
    """
    started = time.time()
    # ``resume_from_checkpoint`` (set by ``train.py --resume_from_checkpoint``) continues an interrupted run
    # exactly: weights, optimizer, schedule, data order, RNG states and the callbacks' state.
    train_result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    train_seconds = time.time() - started
    started = time.time()
    test = trainer.evaluate(test_split, metric_key_prefix="test")
    return train_result, train_seconds, test, time.time() - started
