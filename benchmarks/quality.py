"""The results harness: named grids of recipes x seeds x budgets, one JSON line per finished run.

    python benchmarks/quality.py run scientific-floor --seeds 42 43 44 --budget converged
    python benchmarks/quality.py render            # rewrite the README's results tables from the files
    python benchmarks/quality.py render --check    # exit 1 when a table differs from what the files render
    python benchmarks/quality.py merge runs/gpu-suite/results   # add a GPU window's new rows, then render

``run`` trains each (recipe, seed, budget) of a grid with ``train.py``, skipping every run whose id is
already in ``benchmarks/results/<dataset>.jsonl`` (an interrupted grid resumes where it stopped; a
finished run is never re-run; a run stopped mid-way continues from its last checkpoint, so a long run can
span sessions), and appends its row as soon as it ends: recipe, method (the run's
``run/method``), seed, budget, metrics (every number of ``metrics.json`` but times), epochs,
train_seconds, machine, commit. Each leave-one-out run's per-user target ranks go to
``benchmarks/results/ranks/<dataset>/<run id>.json.gz`` for the paired significance test.

Budgets: ``demo`` is the recipe as written (the 4-epoch CPU demos); ``converged`` is the same
rule for every method, sized to these 2-core machines: 20 epochs with the recipe's learning-rate
schedule annealed over them, keeping the checkpoint of best validation NDCG@10 (patience 20, so no run
stops before its schedule ends). Patience 3 stopped TIGER's seed 43 at epoch 9 on a plateau while its
cosine learning rate was still near its peak: test Recall@10 0.0495, below the 4-epoch demo's 0.0549,
whose schedule had annealed. ``long`` is the rule the first converged runs used
(patience 10, at most 200 epochs): the demo-size TIGER was still improving at epoch 55 under it, over an
hour per seed on CPU, so it is kept for a GPU or for runs resumed across sessions. Each row records its
budget's overrides.

``render`` writes every table between ``<!-- results:<dataset>:<budget>[:<protocol>[:<methods>[:<baselines>]]] -->``
(protocol ``leave-one-out``, ``item-sets``, ``codes`` or ``validation``; methods a comma-separated list of
method-name prefixes, e.g. ``tiger,diger``; baselines the methods each row is compared with, default the
protocol's, e.g. ``tiger,sasrec``) and ``<!-- /results -->`` in the README and the docs pages
(``codes``: level usage, collisions and churn of the semantic IDs each run was evaluated with;
``validation``: a setting chosen on validation NDCG@10, each candidate's test numbers beside it):
mean and standard deviation over seeds, the change of
Recall@10 against TIGER and a paired randomization test over users on Recall@10 (per-user hits
averaged over seeds). It also fills every ``<!-- speed:<file stem> -->`` block from
``benchmarks/results/<file stem>.json`` (``speed_tables.py``: the serving matrix, the scale pipeline), and
every ``<!-- checkpoints -->`` block (``<!-- checkpoints:<name>,... -->`` for some) with the shipped checkpoints
of ``checkpoints/`` and their numbers, read from their cards and harness rows (``checkpoint_tables.py``; the
checkpoints' own ``checkpoints/README.md`` is rendered too).
No number in those tables is typed by hand (``tests/test_quality.py``).
"""

# The harness in three modules, one job each: quality_grids (what a grid trains), quality_runner (training the
# missing runs, the results files) and quality_tables (the statistics and the pages' tables). This file is the
# command line over them.
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quality_grids import BUDGETS, GRIDS  # the sibling modules
from quality_runner import RESULTS, ROOT, merge_results, run_grid
from quality_tables import render_pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a grid's missing runs")
    run.add_argument("grid", choices=sorted(GRIDS))
    run.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    run.add_argument("--budget", choices=sorted(BUDGETS), default="demo")
    run.add_argument("--dry-run", action="store_true", help="print the commands only")
    run.add_argument("--recipes", nargs="+", help="only these recipes of the grid (file stems)")
    run.add_argument("--results-dir", type=Path, default=RESULTS, help="where the rows go (default: %(default)s)")
    run.add_argument("--runs-dir", type=Path, default=None, help="where the runs train (default: runs/bench)")
    run.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run (smoke runs only)"
    )
    merge = commands.add_parser("merge", help="add another results folder's new rows (then render)")
    merge.add_argument("source", type=Path, help="a folder of <dataset>.jsonl files and ranks/, e.g. a GPU window's")
    render = commands.add_parser("render", help="render the README's results tables")
    render.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args()
    if args.command == "run":
        trained = run_grid(
            args.grid,
            args.seeds,
            args.budget,
            args.dry_run,
            runs_dir=args.runs_dir,
            results_dir=args.results_dir,
            recipes=args.recipes,
            extra_overrides=tuple(args.set),
        )
        print(f"[quality] {trained} run(s) trained")
        return 0
    if args.command == "merge":
        try:
            added = merge_results(args.source)
        except FileNotFoundError as error:
            parser.error(str(error))
        print(f"[quality] {len(added)} row(s) added: {', '.join(added) or 'none'}; rendering the tables")
    check = getattr(args, "check", False)
    stale = render_pages(write=not check)
    if check and stale:
        names = ", ".join(str(page.relative_to(ROOT)) for page in stale)
        print(f"results tables in {names} differ from benchmarks/results: run `python benchmarks/quality.py render`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
