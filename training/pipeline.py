"""The whole run a recipe describes, read top to bottom: one loop for every kind of run.

``train.py`` (and ``sidrec train``) call :func:`run`; under ``accelerate launch`` every process runs
it, the Trainer shards the batches, and only the main process writes the final artefacts.

What differs between kinds of run is a :class:`~sidrec.training.tasks.Task`: the semantic-ID task (TIGER
and every method over it: data -> embeddings -> RQ-VAE codes -> the method's model), or the task a method
registers for a model of its own (SASRec's item ids; DMRec's Mult-VAE on a random 3:1:1 split). The loop
itself enters each stage once: claim the output directory, let the task prepare its model and data,
train and test with ``SIDTrainer``, gather the metrics, save the model, write the run files and the model
card, report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback

from ..model_cards.card import write_model_card
from .data.hub_data import pin_hub_revision
from .data.item_table import read_item_table
from .objectives import build_objectives
from .recipe import Recipe, check_recipe, collaborative_recipe
from .registry import first_answer, method_name, registered_methods
from .semantic_id_task import SemanticIDTask
from .stages.fitting import train_and_test, training_arguments
from .stages.results import prefixed, training_figures, write_test_ranks
from .stages.run_dir import exclusive_directory, main_process_print, start_run, write_run_files
from .tasks import Task
from .trainer import SIDTrainer

__all__ = ["run", "task_for"]


def task_for(recipe: Recipe) -> Task:
    """The task a recipe runs: a method's own (SASRec, Mult-VAE) or the semantic-ID task."""
    return first_answer("task", recipe) or SemanticIDTask()


def run(recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict[str, Any] | None = None) -> dict:
    """Run a recipe end to end; returns the flat metrics dict also written to ``metrics.json``."""
    check_recipe(recipe)
    task = task_for(recipe)
    pin_hub_revision(recipe.data, say=main_process_print())
    ensure_collaborative_run(recipe)  # a SASRec the codes read, trained before this run starts
    state, say, output_dir = start_run(recipe, overwrite_output_dir)
    started = time.time()
    overrides = trainer_overrides or {}
    prepared = task.prepare(recipe, state.is_main_process, say, overrides.get("resume_from_checkpoint"))

    trainer = SIDTrainer(
        model=prepared.model,
        args=training_arguments(recipe, output_dir, {**prepared.arguments, **overrides}),
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        data_collator=prepared.collator,
        objectives=build_objectives(recipe.training.objectives),
        ranking_ks=tuple(recipe.evaluation.ks),
        deterministic=recipe.training.deterministic,
        fast_dropout=recipe.training.fast_dropout,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience)]
        + prepared.callbacks,
        **prepared.trainer_options,
    )
    train_result, train_seconds, test, test_seconds = train_and_test(trainer, prepared.test)

    metrics: dict[str, Any] = {"run/method": method_name(recipe), **prepared.metrics}
    metrics.update(prefixed(test, "test_", "test/"))
    metrics.update(task.metrics(recipe, prepared, trainer))
    tokenizer = prepared.trainer_options.get("processing_class")
    for method in registered_methods():
        if method.extra_metrics is not None:
            metrics.update(method.extra_metrics(recipe, prepared.model, tokenizer))
    metrics.update(training_figures(trainer, train_result, train_seconds, task.best_metric))
    metrics.update(
        {
            "test/seconds": test_seconds,
            "test/users_per_second": len(prepared.test) / test_seconds,
            "total/seconds": time.time() - started,
        }
    )
    if state.is_main_process:
        metrics.update(task.save(recipe, prepared, output_dir))
        write_run_files(output_dir, recipe, metrics, trainer.state.log_history)
        write_test_ranks(output_dir, trainer.last_rankings, prepared.test)
        card = write_model_card(output_dir)  # model/README.md (+ the plot), from metrics.json and recipe.yaml
        task.report(recipe, prepared, metrics, card, say)
    state.wait_for_everyone()  # every process is done before the optional printout, which cannot fail a run
    if state.is_main_process:
        task.after(recipe, prepared, say)
    return metrics


def ensure_collaborative_run(recipe: Recipe, say=print) -> None:
    """Point ``embeddings.collaborative_run`` at the cached SASRec of ``collaborative_recipe``, training it once.

    A folder with a saved model and ``metrics.json`` is finished and reused; anything else (absent, or a run
    that was interrupted) is trained from the start. Does nothing when the recipe names a run itself.
    Runs started side by side (a grid's lanes) share the cache: the first trains it while the others wait
    and then read it (``exclusive_directory``).
    """
    if recipe.embeddings.collaborative_run or not recipe.embeddings.collaborative_recipe:
        return
    sasrec = collaborative_recipe(recipe)
    output_dir = Path(sasrec.output_dir)
    with exclusive_directory(output_dir, say=lambda message: say(f"Collaborative embeddings: {message}")):
        if (output_dir / "metrics.json").exists() and read_item_table(output_dir / "model") is not None:
            say(f"Collaborative embeddings: the cached SASRec run {output_dir}")
        else:
            say(f"Collaborative embeddings: training {recipe.embeddings.collaborative_recipe} into {output_dir}")
            run(sasrec, overwrite_output_dir=True)
    recipe.embeddings.collaborative_run = str(output_dir)
