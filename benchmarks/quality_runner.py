"""The runner of the results harness: trains a grid's missing runs and keeps the results files.

``run_grid`` skips every run whose id is already in ``benchmarks/results/<dataset>.jsonl``, resumes a run
stopped mid-way from its last complete checkpoint (``interrupted_checkpoint``), so a long run spans sessions,
and appends one row as each run ends (``result_row``: the metrics, the code fit, the machine and commit), with
the run's per-user test ranks beside it (``save_ranks``). ``merge_results`` brings another folder's new rows
in. This module owns the files' layout; ``quality_tables.py`` reads them through ``read_results`` and
``load_ranks``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from quality_grids import BUDGETS, GRIDS, GridRun, run_id  # a sibling script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def read_results(path: Path) -> list[dict]:
    """The rows of a results file (an absent file has none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def machine() -> str:
    """What the numbers were measured on: the GPU where training can see one, else CPU model and count."""
    import torch  # here, not at the top: rendering tables needs no torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores, {platform.system()}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def commit() -> str:
    """The code's commit, marked ``-dirty`` when the tree had uncommitted changes.

    The results files are left out of the check: a grid appends to them as it runs, which is not a
    change to the code that produced the numbers.
    """
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"]
    dirty = subprocess.run(status, cwd=ROOT, capture_output=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def result_row(run: GridRun, seed: int, budget: str, output_dir: Path, extra_overrides: tuple[str, ...] = ()) -> dict:
    """The JSON line of a finished run, from its ``metrics.json`` (``extra_overrides``: a smoke run's, kept)."""
    metrics = json.loads((output_dir / "metrics.json").read_text())
    kept = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "seconds" not in k}
    method = metrics.get("run/method", Path(run.recipe).stem)
    return {
        "id": run_id(run, seed, budget),
        "recipe": run.recipe,
        "method": method,
        "variant": run.variant,
        "protocol": "item-sets" if method.startswith("mult-vae") else "leave-one-out",
        "seed": seed,
        "budget": budget,
        "budget_overrides": BUDGETS[budget],
        **({"extra_overrides": list(extra_overrides)} if extra_overrides else {}),
        "metrics": kept,
        "code_fit": code_fit(output_dir),
        "epochs": metrics.get("train/epochs"),
        "train_seconds": metrics.get("train/seconds"),
        "machine": machine(),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d"),
    }


def code_fit(output_dir: Path) -> str | None:
    """How the run's semantic IDs were fitted, e.g. ``rqvae-500+restarts+sinkhorn-last`` (None without codes).

    Rows trained on different fits are never pooled by accident: the label travels with each row. Rows written
    before the label existed are ``rqvae`` fits without restarts or balancing.
    """
    path = output_dir / "recipe.yaml"
    if not path.exists():
        return None
    recipe = yaml.safe_load(path.read_text())
    quantizer = recipe.get("quantizer") or {}
    if recipe.get("sasrec", {}).get("enabled") or recipe.get("task") == "collaborative":
        return None
    if quantizer.get("codes_from"):
        return "codes-from-run"
    method = quantizer.get("method", "rqvae")
    label = "rq-kmeans" if method == "rq_kmeans" else f"rqvae-{quantizer.get('epochs')}"
    if quantizer.get("restart_dead_codes"):
        label += "+restarts"
    if quantizer.get("balance_last_level"):
        label += "+sinkhorn-last"
    return label


def save_ranks(dataset: str, row_id: str, output_dir: Path, results_dir: Path = RESULTS) -> None:
    """Keep a finished run's ``test_ranks.json`` as ``ranks/<dataset>/<run id>.json.gz``: the paired test's input."""
    source = output_dir / "test_ranks.json"
    if not source.exists():  # runs from before item-set runs saved theirs
        return
    target = results_dir / "ranks" / dataset / (row_id.replace("/", "__") + ".json.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(source.read_bytes(), mtime=0))


def load_ranks(dataset: str, row_id: str, results_dir: Path = RESULTS) -> np.ndarray | None:
    """A run's saved per-user test ranks (None when it saved none): an int array, one 0-based rank per user
    (-1 = not ranked), or for item sets an object array holding each user's array of ranks."""
    path = results_dir / "ranks" / dataset / (row_id.replace("/", "__") + ".json.gz")
    if not path.exists():
        return None
    ranks = json.loads(gzip.decompress(path.read_bytes()))["ranks"]
    if not (ranks and isinstance(ranks[0], list)):
        return np.asarray(ranks)
    per_user = np.empty(len(ranks), dtype=object)  # item sets: a rank per held-out item, lists of any length
    for user, user_ranks in enumerate(ranks):
        per_user[user] = np.asarray(user_ranks)
    return per_user


def train_with_script(command: list[str]) -> None:
    """Run one ``train.py`` command from the project root (a failed run stops the grid)."""
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def interrupted_checkpoint(output_dir: Path) -> str | None:
    """The last complete checkpoint of a run that started but did not finish (None otherwise).

    A run finishes by writing ``metrics.json``; a checkpoint is complete once its ``trainer_state.json`` is
    written. The harness names this checkpoint to ``train.py``: left to itself, ``--resume_from_checkpoint``
    takes the highest-numbered one, which a kill may have left half-written.
    """
    if (output_dir / "metrics.json").exists():
        return None
    complete = [path.parent for path in (output_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")]
    return str(max(complete, key=lambda path: int(path.name.split("-")[-1]))) if complete else None


def run_grid(
    name: str,
    seeds: list[int],
    budget: str,
    dry_run: bool = False,
    runs_dir: Path | None = None,
    results_dir: Path = RESULTS,
    train=train_with_script,
    recipes: list[str] | None = None,
    extra_overrides: tuple[str, ...] = (),
) -> int:
    """Train every run of the grid not yet in its results file; returns how many were trained.

    ``recipes`` keeps only the grid's runs whose recipe file stem (e.g. ``scientific-sasrec``) or variant
    (e.g. ``freeze-codes-2``) is listed. ``extra_overrides`` go after every run's own (the GPU suite's dry
    run shrinks the data with them); they are recorded in each row, and refused for the committed results
    files, whose rows must be the grid's runs as named.
    """
    if extra_overrides and Path(results_dir).resolve() == RESULTS.resolve():
        raise ValueError(
            f"extra overrides {list(extra_overrides)} would land rows that are not the grid's runs in "
            f"{RESULTS}; give --results-dir a folder of its own"
        )
    trained = 0
    runs = [run for run in GRIDS[name] if recipes is None or {Path(run.recipe).stem, run.variant} & set(recipes)]
    for run, seed in itertools.product(runs, seeds):
        path = results_dir / f"{run.dataset}.jsonl"
        row_id = run_id(run, seed, budget)
        if any(row["id"] == row_id for row in read_results(path)):
            print(f"[quality] {row_id}: finished before, skipped")
            continue
        root = runs_dir or ROOT / "runs" / "bench"
        output_dir = root / run.dataset / row_id
        command = ["train.py", "--config", run.recipe, f"seed={seed}", f"output_dir={output_dir}"]
        command += [*BUDGETS[budget], *run.resolved_overrides(seed, budget, root), *extra_overrides]
        checkpoint = interrupted_checkpoint(output_dir)
        if checkpoint:  # a run stopped mid-way (e.g. by the end of a session) continues instead of restarting
            print(f"[quality] {row_id}: resuming from {checkpoint} (delete {output_dir} to start it again)")
            command += ["--resume_from_checkpoint", checkpoint]
        else:
            command.append("--overwrite_output_dir")
        print("[quality] " + " ".join(command), flush=True)
        if dry_run:
            continue
        train(command)
        row = result_row(run, seed, budget, output_dir, extra_overrides)
        save_ranks(run.dataset, row_id, output_dir, results_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:  # one line as each run lands: an interruption loses only the current run
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        trained += 1
    return trained


def merge_results(source: Path, results_dir: Path = RESULTS) -> list[str]:
    """Bring the rows of another results folder (a GPU window's, another worktree's) into ``results_dir``.

    Appends each row of ``source/<dataset>.jsonl`` whose id is not in ``results_dir`` yet, in the source's
    order, with its per-user ranks; a row already present is left as it is (a finished run is never
    replaced). A source row without its ranks file still lands: the table shows it, without a p-value.
    Returns the ids added.
    """
    source = Path(source)
    if not any(source.glob("*.jsonl")):
        raise FileNotFoundError(f"{source} holds no <dataset>.jsonl results file: name the folder a grid wrote to")
    added = []
    for incoming in sorted(source.glob("*.jsonl")):
        target = results_dir / incoming.name
        known = {row["id"] for row in read_results(target)}
        rows = [row for row in read_results(incoming) if row["id"] not in known]
        for row in rows:
            ranks = source / "ranks" / incoming.stem / (row["id"].replace("/", "__") + ".json.gz")
            if ranks.exists():
                destination = results_dir / "ranks" / incoming.stem / ranks.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(ranks.read_bytes())
        if rows:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "a") as handle:
                handle.writelines(json.dumps(row, sort_keys=True) + "\n" for row in rows)
            added += [row["id"] for row in rows]
    return added
