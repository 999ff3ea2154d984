"""The run directory: claimed at the start (never overwritten silently), filled at the end."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import PartialState
from filelock import FileLock, Timeout
from transformers import set_seed

from ...model_cards.card import ADAPTER_DIR
from ...model_cards.plots import plot_training
from ..errors import RecipeError
from ..recipe import Recipe


def prepare_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to write over a finished run unless asked to, so results are never lost silently."""
    finished = (output_dir / "metrics.json").exists() or (output_dir / "model").exists()
    if finished and not overwrite:
        raise RecipeError(
            f"{output_dir} already holds a run (metrics.json or model/). Choose another output_dir "
            "(e.g. output_dir=runs/my-run) or pass --overwrite_output_dir to replace it."
        )
    if finished and PartialState().is_main_process:
        for name in ("model", ADAPTER_DIR, "checkpoints", "metrics.json"):
            target = output_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def main_process_print(state: PartialState | None = None):
    """``print`` in the main process, a no-op in the others: one line per run, not one per process."""
    return print if (state or PartialState()).is_main_process else (lambda *a, **k: None)


def start_run(recipe: Recipe, overwrite_output_dir: bool):
    """What every task does first: claim the output directory, set threads and seed.

    Returns the process state, a ``print`` that only the main process speaks through, and the
    output directory.
    """
    state = PartialState()
    say = main_process_print(state)
    output_dir = Path(recipe.output_dir)
    prepare_output_dir(output_dir, overwrite_output_dir)
    state.wait_for_everyone()
    if recipe.training.torch_threads:
        torch.set_num_threads(recipe.training.torch_threads)
    set_seed(recipe.seed)
    return state, say, output_dir


@contextmanager
def exclusive_directory(path: Path, say=print) -> Iterator[None]:
    """Hold ``path`` for this run alone while the block builds or reads it.

    Runs started side by side (a grid's lanes) share caches such as the collaborative SASRec; without a
    lock each would train it over the others' files. The lock is a file beside ``path``; a run that finds
    it held says so and waits. A multi-process launch (``WORLD_SIZE`` > 1) takes no lock: its processes
    must build the cache together (DDP), and before its trainer starts they cannot yet agree on who
    holds it, so two such launches on one cache are not protected from each other.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"another run is building {path}; waiting for it ({lock.lock_file})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Write a directory beside its final place and move it there only when every file is written.

    Yields a hidden staging directory (``.<name>.partial``) next to ``path``. When the block ends
    without an error, an existing ``path`` is moved aside and the staging directory takes its name
    (two renames on the same file system; in between both complete copies exist); when it fails or
    the process is killed, ``path`` is untouched and the staging directory is removed (or, after a
    kill, left hidden and cleared by the next save). So a crash while saving never leaves a
    half-written model where a good one was.
    """
    path = Path(path)
    staging, previous = path.with_name(f".{path.name}.partial"), path.with_name(f".{path.name}.previous")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    if path.exists():
        path.rename(previous)
    staging.rename(path)
    shutil.rmtree(previous, ignore_errors=True)


def write_run_files(output_dir: Path, recipe: Recipe, metrics: dict[str, Any], log_history: list[dict]) -> None:
    """``training.png``, ``recipe.yaml`` (the recipe as run) and ``metrics.json`` of a finished run."""
    plot_training(log_history, output_dir / "training.png", title=recipe.name)
    (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


def saved_sizes(output_dir: Path) -> dict[str, int]:
    """Bytes of the saved weights: the full model and, for a PEFT run, the adapter alone."""
    files = {"model_bytes": output_dir / "model" / "model.safetensors"}
    files["adapter_bytes"] = output_dir / ADAPTER_DIR / "adapter_model.safetensors"
    return {f"finetune/{name}": path.stat().st_size for name, path in files.items() if path.exists()}
