"""Ship a results-harness run's trained model as a checkpoint of sidrec: one command, nothing typed by hand.

    python benchmarks/ship_checkpoint.py runs/bench/beauty/beauty-tiger/paper/seed42 beauty-tiger
    python benchmarks/quality.py render          # the checkpoint lists of the README and docs
    pytest -q tests/test_checkpoints.py          # it loads, serves, and reproduces its recorded ranks

Copies the run's ``model/`` directory (weights, config, tokenizer files, ``items.jsonl``, remote code, card, plot;
never the trainer's ``checkpoints/`` or optimizer state) with the run's ``recipe.yaml`` and ``metrics.json`` into
``checkpoints/<name>/``, adds the ``sequential-recommendation`` pipeline code (``add_pipeline_code``), points the
card's usage snippets at ``checkpoints/<name>`` instead of the run's own folder, and writes ``provenance.json``:
the run's row of ``benchmarks/results/<dataset>.jsonl`` (verbatim), its per-user ranks file and the commands that
produced it. Only a run the harness recorded can be shipped: the row is found from the run's folder
(``<runs_dir>/<dataset>/<run id>``), must report the run's own ``metrics.json``, and must have its saved per-user
test ranks, since ``tests/test_checkpoints.py`` checks the shipped model against them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from quality_grids import BUDGETS, GRIDS, run_id  # the sibling modules
from quality_runner import RESULTS, ROOT, read_results

CHECKPOINTS = ROOT / "checkpoints"
RUN_FILES = ("recipe.yaml", "metrics.json")  # beside the model: how it was trained and everything it measured
# What a model directory never needs to be served: the trainer's resume state, if a run ever left it there.
NOT_SHIPPED = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"}
CHECKED_METRICS = ("test/recall@10", "test/ndcg@10", "test/recall@20", "test/users")


class ShipError(ValueError):
    """A run that cannot be shipped as it is; the message names the problem and the fix."""


def find_row(run_dir: Path, results_dir: Path, dataset: str | None, row_id: str | None) -> tuple[str, dict]:
    """(data set, harness row) of the run in ``run_dir``: by default read from its folder, ``<dataset>/<run id>``."""
    parts = run_dir.resolve().parts
    dataset = dataset or parts[-4]
    row_id = row_id or "/".join(parts[-3:])
    results_file = results_dir / f"{dataset}.jsonl"
    rows = [row for row in read_results(results_file) if row["id"] == row_id]
    if not rows:
        raise ShipError(
            f"{results_file} has no row {row_id!r}: only a run the results harness recorded can be shipped. Pass "
            "--dataset and --row-id when the run's folder is not <runs_dir>/<dataset>/<recipe>/<budget>/seed<N>"
        )
    row = rows[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    differing = [key for key in CHECKED_METRICS if row["metrics"].get(key) != metrics.get(key)]
    if differing:
        raise ShipError(
            f"the row {row_id!r} of {results_file} does not report {run_dir}/metrics.json ({', '.join(differing)} "
            "differ): the folder holds another run than the row; name the right one with --row-id"
        )
    return dataset, row


def ranks_file(dataset: str, row: dict, results_dir: Path) -> Path:
    """The run's saved per-user test ranks (``quality_runner.save_ranks``), which the checkpoint test replays."""
    path = results_dir / "ranks" / dataset / (row["id"].replace("/", "__") + ".json.gz")
    if not path.is_file():
        raise ShipError(
            f"{path} is missing: the run's per-user test ranks are what tests/test_checkpoints.py checks the shipped "
            "model against; keep them with the row (quality_runner.save_ranks, or `quality.py merge`)"
        )
    return path


def commands(run_dir: Path, dataset: str, row: dict) -> dict[str, str]:
    """The harness command that trained the row's run, and the ``train.py`` command it ran."""
    seed, budget = row["seed"], row["budget"]
    for grid, runs in GRIDS.items():
        for run in runs:
            if run.dataset == dataset and run_id(run, seed, budget) == row["id"]:
                runs_dir = run_dir.resolve().parents[3]
                overrides = [*BUDGETS[budget], *run.resolved_overrides(seed, budget, runs_dir)]
                chosen = run.variant or Path(run.recipe).stem
                train = ["python train.py --config", run.recipe, f"seed={seed}", f"output_dir={run_dir}", *overrides]
                return {
                    "harness": f"python benchmarks/quality.py run {grid} --recipes {chosen} --seeds {seed} "
                    f"--budget {budget}",
                    "train": " ".join(train),
                }
    raise ShipError(f"no grid of benchmarks/quality_grids.py trains the run {row['id']!r}: ship a harness run")


def rewrite_card_paths(card: Path, run_dir: Path, recipe_output_dir: str | None, shipped_as: str) -> None:
    """Point the card's usage snippets at the shipped folder: the run's own ``model/`` path means nothing elsewhere."""
    text = card.read_text()
    for folder in {str(run_dir / "model"), str(run_dir.resolve() / "model")} | (
        {f"{recipe_output_dir}/model"} if recipe_output_dir else set()
    ):
        text = text.replace(f'"{folder}"', f'"{shipped_as}"')
    card.write_text(text)


def _shown(path: Path) -> str:
    """A path as the repository names it (relative to its root) when it lies inside, else as given."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def ship(
    run_dir: Path,
    name: str,
    checkpoints_dir: Path = CHECKPOINTS,
    results_dir: Path = RESULTS,
    dataset: str | None = None,
    row_id: str | None = None,
    overwrite: bool = False,
    max_mb: float = 32.0,
) -> Path:
    """Copy a harness run's model into ``checkpoints_dir/name`` with its provenance; returns the new folder."""
    import yaml

    from sidrec.modeling.pipeline_sequential_recommendation import add_pipeline_code

    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    for needed in (model_dir / "config.json", model_dir / "README.md", *(run_dir / f for f in RUN_FILES)):
        if not needed.is_file():
            raise ShipError(f"{needed} is missing: pass a finished run's folder (model/, {', '.join(RUN_FILES)})")
    if not name or "/" in name or name.startswith(("_", ".")):
        raise ShipError(f"name the checkpoint with one folder name such as scientific-tiger, got {name!r}")
    found_dataset, row = find_row(run_dir, results_dir, dataset, row_id)
    ranks = ranks_file(found_dataset, row, results_dir)
    files = [path for path in sorted(model_dir.iterdir()) if path.is_file() and path.name not in NOT_SHIPPED]
    size_mb = sum(path.stat().st_size for path in files) / 2**20
    if size_mb > max_mb:
        raise ShipError(
            f"{model_dir} holds {size_mb:.1f} MB, over --max-mb {max_mb:g}: the checkpoints travel in every clone "
            "and wheel; raise --max-mb only for a model worth it"
        )
    target = Path(checkpoints_dir) / name
    if target.exists():
        if not overwrite:
            raise ShipError(f"{target} exists: pass --overwrite to replace it with this run's model")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, target / path.name)
    for filename in RUN_FILES:
        shutil.copy2(run_dir / filename, target / filename)
    add_pipeline_code(target)
    recipe_output_dir = (yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}).get("output_dir")
    rewrite_card_paths(target / "README.md", run_dir, recipe_output_dir, f"checkpoints/{name}")
    provenance = {
        "name": name,
        "dataset": found_dataset,
        "results_file": f"benchmarks/results/{found_dataset}.jsonl",
        "ranks_file": _shown(ranks),
        "source_run": str(run_dir),
        "commands": commands(run_dir, found_dataset, row),
        "row": row,
    }
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished harness run, e.g. runs/bench/scientific/<id>")
    parser.add_argument("name", help="the checkpoint's folder name under checkpoints/, e.g. beauty-tiger")
    parser.add_argument("--dataset", help="the results file's data set (default: read from the run's folder)")
    parser.add_argument("--row-id", help="the harness row's id (default: read from the run's folder)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="default: %(default)s")
    parser.add_argument("--checkpoints-dir", type=Path, default=CHECKPOINTS, help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace a checkpoint of the same name")
    parser.add_argument("--max-mb", type=float, default=32.0, help="refuse a larger model (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        target = ship(
            args.run_dir,
            args.name,
            args.checkpoints_dir,
            args.results_dir,
            args.dataset,
            args.row_id,
            args.overwrite,
            args.max_mb,
        )
    except ShipError as error:
        parser.error(str(error))
    size_mb = sum(path.stat().st_size for path in target.iterdir() if path.is_file()) / 2**20
    print(f"[ship] {target}: {size_mb:.1f} MB; next: `python benchmarks/quality.py render`, tests/test_checkpoints.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
