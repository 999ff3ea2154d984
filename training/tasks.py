"""What differs between the kinds of run, behind one interface the one run loop (``pipeline.run``) drives.

A task turns a recipe into a model with its data, collator and ranker (:meth:`Task.prepare`), adds its
own figures to the metrics (:meth:`Task.metrics`), saves its model (:meth:`Task.save`) and says what it
got (:meth:`Task.report`). Everything else (the output directory, the ``SIDTrainer``, training and testing,
the run files, the model card) is the same for every task and lives in the run loop.

The semantic-ID task (TIGER and every method over it) ships in ``training/semantic_id_task.py``; a
method that trains a model of its own declares its task through the registry's ``task`` hook (SASRec,
DMRec's Mult-VAE setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


@dataclass
class PreparedRun:
    """A model ready to train, with what the trainer and the saving step need beside it.

    ``trainer_options`` are extra ``SIDTrainer`` arguments (``processing_class``, ``num_beams``,
    ``ranker``, ...); ``arguments`` override ``TrainingArguments`` before the command line's own overrides.
    ``state`` holds whatever the task's later parts read back (its data, its tokenizer).
    """

    model: Any
    train: Any
    validation: Any
    test: Any
    collator: Any
    trainer_options: dict[str, Any] = field(default_factory=dict)
    arguments: dict[str, Any] = field(default_factory=dict)
    callbacks: list[TrainerCallback] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # known before training (a base model's test)
    state: dict[str, Any] = field(default_factory=dict)


class Task:
    """One kind of run. Subclasses fill in :meth:`prepare` and :meth:`save`; the rest have defaults."""

    best_metric = "ndcg@10"  # the validation metric early stopping and the best checkpoint follow

    def prepare(self, recipe: Any, verbose: bool, say, resume_from: str | None) -> PreparedRun:
        raise NotImplementedError

    def metrics(self, recipe: Any, prepared: PreparedRun, trainer) -> dict[str, Any]:
        """The task's own figures after the test (data statistics, code statistics, ...)."""
        return {}

    def save(self, recipe: Any, prepared: PreparedRun, output_dir: Path) -> dict[str, Any]:
        """Write the trained model to ``output_dir/model`` (atomically); returns figures to add (its size)."""
        raise NotImplementedError

    def report(self, recipe: Any, prepared: PreparedRun, metrics: dict[str, Any], card: Path, say) -> None:
        """The printout of a finished run (main process only)."""

    def after(self, recipe: Any, prepared: PreparedRun, say) -> None:
        """Optional work once every process is done, which cannot fail the run (an example's printout)."""
