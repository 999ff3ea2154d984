"""Training: ``TrainingArguments`` from the recipe, and the one ``SIDTrainer`` every task uses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments

from ..errors import RecipeError
from ..recipe import Recipe

# Written into every checkpoint: the training seconds spent up to it, so a resumed run reports its whole cost.
TRAIN_SECONDS_FILE = "train_seconds.json"


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
        bf16=t.precision == "bf16",
        torch_compile=t.torch_compile,
    )
    values.update(overrides or {})
    return TrainingArguments(**values)


def with_lengths(split):
    """Add the history length, which ``group_by_length`` batches by to avoid padding short histories."""
    return split.add_column("length", [len(history) for history in split["history"]])


class TrainSecondsCallback(TrainerCallback):
    """Records in each checkpoint the training seconds spent so far (earlier attempts included).

    A run interrupted by the end of a session and resumed in the next one would otherwise report only the
    last attempt's time. (A kill between a checkpoint and this file loses the count before it; the run
    then reports the seconds after the resume only.)
    """

    def __init__(self, seconds_before: float) -> None:
        self.seconds_before = seconds_before
        self.started = time.time()

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            seconds = self.seconds_before + time.time() - self.started
            (checkpoint / TRAIN_SECONDS_FILE).write_text(json.dumps({"train_seconds": seconds}))


def seconds_before(checkpoint: str | None) -> float:
    """Training seconds a checkpoint says were spent before it (0 for a fresh run or when unrecorded)."""
    path = Path(checkpoint) / TRAIN_SECONDS_FILE if checkpoint else None
    return float(json.loads(path.read_text())["train_seconds"]) if path and path.exists() else 0.0


def check_resumed_codes(trainer, checkpoint: str) -> None:
    """Refuse to resume over semantic IDs other than the ones the checkpoint was trained on.

    A static-code run fits its quantizer again before it resumes; on another machine or library version
    the fit can come out differently, and the restored weights would then read the wrong items. Runs whose
    model carries its own living code table (DIGER) restore it from the checkpoint and are not checked.
    """
    tokenizer, saved = trainer.processing_class, Path(checkpoint) / "item_codes.safetensors"
    if getattr(trainer.model, "item_codes", None) is not None or not hasattr(tokenizer, "item_codes"):
        return
    if saved.exists() and not torch.equal(load_file(saved)["codes"], tokenizer.item_codes):
        raise RecipeError(
            f"the semantic IDs fitted for this run differ from the ones {checkpoint} was trained on (the quantizer "
            "fit came out differently: another machine, library version or quantizer setting). Resume on the "
            "machine that started the run, or start it again without --resume_from_checkpoint"
        )


def train_and_test(trainer, test_split) -> tuple[Any, float, dict[str, float], float]:
    """Train (early stopping and best-model loading as the arguments say), then rank the test users.

    Returns the ``TrainOutput``, the training seconds (earlier attempts of a resumed run included), the
    test metrics (``test_*`` keys) and the test seconds.
    """
    # ``resume_from_checkpoint`` (set by ``train.py --resume_from_checkpoint``) continues an interrupted run
    # exactly: weights, optimizer, schedule, data order, RNG states and the callbacks' state.
    resume = trainer.args.resume_from_checkpoint
    if resume:
        check_resumed_codes(trainer, resume)
    before = seconds_before(resume)
    trainer.add_callback(TrainSecondsCallback(before))
    started = time.time()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = before + time.time() - started
    started = time.time()
    test = trainer.evaluate(test_split, metric_key_prefix="test")
    return train_result, train_seconds, test, time.time() - started
