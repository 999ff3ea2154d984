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
``benchmarks/results/<file stem>.json`` (``speed_tables.py``: the serving matrix, the scale pipeline).
No number in those tables is typed by hand (``tests/test_quality.py``).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from speed_tables import render_speed_table  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BUDGETS = {
    "demo": [],
    "converged": ["training.epochs=20", "training.early_stopping_patience=20"],
    "long": ["training.epochs=200", "training.early_stopping_patience=10"],
    # The recipe's own schedule and stopping rule (the paper-size reproductions state theirs in the recipe).
    "paper": [],
}
KS = (5, 10, 20)
BASELINE_PAIR = ("tiger", "sasrec")  # what every front-page row is compared with
TABLE_METRICS = [f"{name}@{k}" for name in ("recall", "ndcg") for k in KS]


@dataclass(frozen=True)
class GridRun:
    recipe: str  # path under configs/
    dataset: str  # the results file's name
    overrides: tuple[str, ...] = ()
    variant: str = ""  # names an ablation (recipe + overrides) in run ids and tables, e.g. "freeze-codes-2"

    def resolved_overrides(self, seed: int, budget: str, runs_dir: Path) -> list[str]:
        """The overrides with ``{seed}``, ``{budget}`` and ``{runs_dir}`` filled in: a run that reads another
        grid run's output (its codes) names the one of its own seed and budget."""
        values = {"{seed}": str(seed), "{budget}": budget, "{runs_dir}": str(runs_dir)}
        resolved = []
        for override in self.overrides:
            for placeholder, value in values.items():
                override = override.replace(placeholder, value)
            resolved.append(override)
        return resolved


def _sci(name: str) -> GridRun:
    return GridRun(f"configs/scientific-{name}.yaml", "scientific")


def _beauty(name: str) -> GridRun:
    return GridRun(f"configs/beauty-{name}.yaml", "beauty")


def _ablation(name: str, variant: str, *overrides: str) -> GridRun:
    return GridRun(f"configs/scientific-{name}.yaml", "scientific", tuple(overrides), variant)


RESTARTS_SINKHORN = ("quantizer.restart_dead_codes=true", "quantizer.balance_last_level=true")
# bf16 autocast and eager attention: the CPU-speed training settings of the paper-size reproduction.
FAST_TRAINING = ("training.precision=bf16", "model.attn_implementation=eager")
# Ranking without the user's own items, as some published SASRec numbers do (none is ever a test target here).
EXCLUDE_HISTORY = ("evaluation.exclude_history=true",)
NEAREST_CODES = ("joint.sinkhorn_epsilon=0", "joint.logits=calibrated")  # DIGER's best setting here (docs/diger.md)


def _dmrec_weight(weight: str) -> str:
    return f"training.objectives={{ce: 1.0, dmrec: {{strategy: mddm, beta: 0.5, weight: {weight}}}}}"


# One option of DIGER's end-to-end mode at a time, over the FrqUD demo (issue: DIGER that works).
DIGER_ABLATIONS = [
    _ablation("diger-frqud-demo", "warmup-1", "joint.tokenizer_warmup_epochs=1"),
    _ablation("diger-frqud-demo", "freeze-codes-2", "joint.freeze_codes_epoch=2"),
    _ablation("diger-frqud-demo", "alternate", "joint.alternate=true"),
    _ablation("diger-frqud-demo", "hysteresis-1", "joint.code_hysteresis=1.0"),
    _ablation("diger-frqud-demo", "sinkhorn-centred", "joint.logits=centred", "joint.sinkhorn_epsilon=0.003"),
    _ablation("diger-frqud-demo", "codebook-embeddings", "joint.code_embeddings=codebook"),
    # Scale-aware updates: the deep levels' codebooks fixed (their tiny code gaps re-label most items at any step).
    _ablation("diger-frqud-demo", "frozen-levels-1-2", "joint.frozen_code_levels=[1, 2]"),
    _ablation("diger-frqud-demo", "frozen-level-2", "joint.frozen_code_levels=[2]"),
    # ... and with the encoder fixed too, so only the level-0 codebook moves: is deep churn the coarse levels' doing?
    _ablation(
        "diger-frqud-demo",
        "frozen-levels-1-2+frozen-encoder",
        "joint.frozen_code_levels=[1, 2]",
        "joint.frozen_encoder=all",
    ),
    # Why the reference mode loses to TIGER: its balanced starting codes alone (frozen from epoch 0), or
    # its churn alone (nearest codes, no Sinkhorn).
    _ablation("diger-reference-frqud-demo", "frozen-sinkhorn-codes", "joint.freeze_codes_epoch=0"),
    _ablation("diger-reference-frqud-demo", "nearest-codes", *NEAREST_CODES),
    # At the converged budget: is late churn the whole gap to TIGER? The best setting with its codes fixed for
    # the second half of the 20 epochs (ETEGRec's final recommender-only phase).
    _ablation("diger-reference-frqud-demo", "nearest-codes+freeze-10", *NEAREST_CODES, "joint.freeze_codes_epoch=10"),
    # Two-stage DIGER: are the codes the end-to-end FrqUD run ended with better codes than TIGER's, once the
    # recommender no longer pays for their churn? TIGER trained fresh on them (that run of the same seed and
    # budget must have finished: `--recipes scientific-diger-frqud-demo` of the scientific-diger grid).
    *(
        _ablation(
            "tiger-demo",
            f"diger-end-to-end-{strategy}-codes",
            f"quantizer.codes_from={{runs_dir}}/scientific/scientific-diger-{strategy}-demo/{{budget}}/seed{{seed}}/model",
        )
        for strategy in ("frqud", "sdud")
    ),
]


GRIDS: dict[str, list[GridRun]] = {
    "scientific-floor": [
        _sci("sasrec"),
        _sci("tiger-demo"),
        # The same TIGER runs again, to be trained on another machine than the first ones: the demo budget
        # showed the machine alone moving seed 42 by 12% (0.0473 AMD EPYC, 0.0528 Intel Xeon).
        GridRun("configs/scientific-tiger-demo.yaml", "scientific", (), "rerun"),
        # The training speed settings (bf16 autocast, eager attention) against the fp32 rows of the same machine:
        # the same quality within seed noise, or the speed-up is not free.
        GridRun("configs/scientific-tiger-demo.yaml", "scientific", FAST_TRAINING, "bf16-eager"),
        GridRun("configs/scientific-sasrec.yaml", "scientific", EXCLUDE_HISTORY, "exclude-history"),
    ],
    "scientific-methods": [
        _sci("tiger-demo"),
        _sci("tiger-soda-demo"),
        _sci("diger-frqud-demo"),
        _sci("diger-sdud-demo"),
        _sci("diger-frqud-soda-demo"),
        _sci("dmrec-t5-demo"),
    ],
    "scientific-diger": [
        _sci("tiger-demo"),
        _sci("diger-reference-frqud-demo"),
        _sci("diger-reference-sdud-demo"),
        _sci("diger-frqud-demo"),
        _sci("diger-sdud-demo"),
    ],
    "scientific-diger-ablations": DIGER_ABLATIONS,
    # SODA's schedules: over TIGER's frozen codes, tokenizer trained at every step, and alternately (the
    # SODA abstract's schedule: a tokenizer epoch, a recommender epoch, a last epoch on frozen codes).
    "scientific-soda": [
        _sci("tiger-soda-demo"),
        _sci("joint-soda-demo"),
        _ablation("joint-soda-demo", "alternate", "joint.alternate=true", "joint.freeze_codes_epoch=3"),
        # SODA over the best DIGER setting (reference mode, nearest codes): its gradient reaches the codebooks.
        _ablation(
            "diger-reference-frqud-demo",
            "nearest-codes+soda",
            *NEAREST_CODES,
            "training.objectives={ce: 1.0, quantizer: {weight: 1.0, balance: 0.1}, soda: {weight: 1.0}}",
        ),
    ],
    # DMRec-T5's matching weight, chosen on validation NDCG@10 at the demo budget (the recipe holds the choice).
    "scientific-dmrec-t5": [
        _sci("dmrec-t5-demo"),
        *(
            _ablation("dmrec-t5-demo", f"weight-{weight}", _dmrec_weight(weight))
            for weight in ("0.01", "0.25")  # the recipe has 0.0001
        ),
        # The latent token without any matching: is a DMRec-T5 gain the matching's or the extra noisy token's?
        _ablation("dmrec-t5-demo", "weight-0", _dmrec_weight("0")),
    ],
    # Collaborative semantic IDs read one converged SASRec (configs/scientific-sasrec.yaml, seed 42), which
    # the first of them trains into the cache (.cache/sidrec/collaborative/) and the rest reuse.
    "scientific-collaborative": [
        _sci(name)
        for name in (
            "letter-demo",
            "tiger-textcf-demo",
            "tiger-cf-demo",
            "etegrec-demo",
            "tiger-textcf-soda-demo",
            "tiger-cf-soda-demo",  # SODA over the best collaborative row at the converged budget
            "letter-soda-demo",  # SODA over its paper's own backbones
            "etegrec-soda-demo",
        )
    ],
    "scientific-mult-vae": [_sci("mult-vae-base"), _sci("mult-vae-mddm")],
    "beauty-floor": [
        _beauty("sasrec"),
        _beauty("tiger-cpu"),
        # Where SASRec's gap to the published 0.085-0.092 Recall@10 comes from: the public runs read 50 items.
        GridRun("configs/beauty-sasrec.yaml", "beauty", ("data.max_history=50",), "history-50"),
        GridRun("configs/beauty-sasrec.yaml", "beauty", ("sasrec.hidden_size=128",), "hidden-128"),
        # Some published SASRec numbers rank without the user's own items; sidrec keeps them (none is ever a
        # test target here), so this variant reads the same model the way those numbers were read.
        GridRun("configs/beauty-sasrec.yaml", "beauty", EXCLUDE_HISTORY, "exclude-history"),
        # ... and trained as long as the public runs are: patience 20 ran the same recipe to a best epoch of 102.
        GridRun(
            "configs/beauty-sasrec.yaml",
            "beauty",
            (*EXCLUDE_HISTORY, "training.early_stopping_patience=20"),
            "exclude-history+patience-20",
        ),
    ],
    "beauty-mult-vae": [_beauty("mult-vae-base"), _beauty("mult-vae-mddm")],
    # Scientific's best DIGER setting and best collaborative-SID row, one seed each beside Beauty's TIGER.
    "beauty-diger": [
        GridRun("configs/beauty-diger-reference-frqud-cpu.yaml", "beauty", NEAREST_CODES, "nearest-codes")
    ],
    # tiger-cf and SODA over it: Scientific's best collaborative row and its best row over all.
    # Which code fit TIGER ranks best with (issue 34): one seed each at the converged budget to rank the options
    # on validation NDCG@10, then three seeds for the chosen default. The plain fit is scientific-floor's tiger.
    "scientific-code-fits": [
        _ablation("tiger-demo", "restarts", "quantizer.restart_dead_codes=true"),
        _ablation("tiger-demo", "restarts+sinkhorn-last", *RESTARTS_SINKHORN),
        _ablation("tiger-demo", "rq-kmeans", "quantizer.method=rq_kmeans", "quantizer.kmeans_iterations=50"),
    ],
    # TIGER reproduced on the TIGER benchmark: the paper's recommender, trained on CPU to its stopping rule.
    "beauty-reproduction": [_beauty("tiger")],
    "beauty-collaborative": [
        _beauty("tiger-cf-cpu"),
        _beauty("tiger-cf-soda-cpu"),
        # TIGER's Beauty row ran on the AMD machine, the collaborative rows on the Intel one: the same TIGER
        # recipe on the machine of the rows it is compared with (`--recipes rerun`) takes the CPU out of it.
        GridRun("configs/beauty-tiger-cpu.yaml", "beauty", (), "rerun"),
    ],
}


def run_id(run: GridRun, seed: int, budget: str) -> str:
    name = Path(run.recipe).stem + (f"+{run.variant}" if run.variant else "")
    return f"{name}/{budget}/seed{seed}"


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
    source = output_dir / "test_ranks.json"
    if not source.exists():  # runs from before item-set runs saved theirs
        return
    target = results_dir / "ranks" / dataset / (row_id.replace("/", "__") + ".json.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(source.read_bytes(), mtime=0))


def load_ranks(dataset: str, row_id: str, results_dir: Path = RESULTS) -> np.ndarray | None:
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


# ----- statistics -------------------------------------------------------------------------------------
def paired_randomization_test(a: np.ndarray, b: np.ndarray, samples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) = 0 by sign flips of the per-user differences.

    Under the null hypothesis each user's difference is as likely to have either sign, so the
    p-value is the share of sign assignments whose mean difference is at least as far from zero as
    the observed one. Exact (every assignment) for up to 16 users with a non-zero difference,
    ``samples`` random assignments otherwise (seeded, so a table renders the same every time).
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[diff != 0]  # zero differences do not change under a flip
    if len(diff) == 0:
        return 1.0
    observed = abs(diff.sum())
    if len(diff) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diff))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(samples, len(diff)))
    return float(np.mean(np.abs(signs @ diff) >= observed - 1e-12))


def hits_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user Recall@k from 0-based ranks (-1 = not ranked).

    Leave-one-out: one target rank per user, so Recall@k is hit@k. Item sets (an object array of
    per-user rank arrays, DMRec's split): the share of the user's held-out items ranked below ``k``.
    """
    if ranks.dtype == object:
        return np.asarray([np.mean((user >= 0) & (user < k)) for user in ranks], dtype=np.float64)
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k from 0-based ranks (-1 = not ranked), the definition of ``training.metrics``.

    Leave-one-out: ``1 / log2(rank + 2)`` when the target is ranked below ``k``, else 0 (the ideal DCG
    is 1). Item sets: the discounted hits of the user's held-out items divided by the ideal DCG of
    ``min(k, |held-out|)`` hits.
    """
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    if ranks.dtype == object:
        return np.asarray(
            [discounts[user[(user >= 0) & (user < k)]].sum() / discounts[: min(k, len(user))].sum() for user in ranks],
            dtype=np.float64,
        )
    ranks = np.asarray(ranks)
    found = (ranks >= 0) & (ranks < k)
    return np.where(found, 1.0 / np.log2(np.where(found, ranks, 0) + 2.0), 0.0)


# ----- tables ------------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {float(np.std(values, ddof=1)):.4f}"


BASELINES = {"leave-one-out": "tiger", "item-sets": "mult-vae"}
# Each row's change against a baseline, with its paired p-value over these per-user measures.
COMPARED_METRICS = {"recall@10": lambda ranks: hits_at(ranks, 10), "ndcg@10": lambda ranks: ndcg_at(ranks, 10)}


def render_table(
    rows: list[dict],
    dataset: str,
    budget: str,
    protocol: str = "leave-one-out",
    results_dir: Path = RESULTS,
    baselines: tuple[str, ...] | None = None,
) -> str:
    """The markdown table of one data set, budget and protocol: a row per method, mean ± std over seeds.

    Against each baseline (default: the protocol's, TIGER for leave-one-out, the plain Mult-VAE for item
    sets; a block can name more, e.g. TIGER and SASRec): the relative change of mean Recall@10 and of mean
    NDCG@10 and, where every run saved its per-user ranks, the paired randomization test on each per-user
    measure averaged over seeds.
    """
    chosen = [r for r in rows if r["budget"] == budget and r.get("protocol", "leave-one-out") == protocol]
    if not chosen:
        return f"_No {budget}-budget {protocol} runs in `benchmarks/results/{dataset}.jsonl` yet._"
    methods = _by_method(chosen)
    against = [(name, methods.get(name, [])) for name in (baselines or (BASELINES[protocol],))]
    per_user = {method: _mean_per_user(runs, dataset, results_dir) for method, runs in methods.items()}
    header = ["method", "seeds", *[m.replace("recall", "R").replace("ndcg", "N") for m in TABLE_METRICS]]
    for position, (name, _) in enumerate(against):
        header += [f"R@10 vs {name}", "p (R@10)" if position == 0 else f"p vs {name}"]
        header += [f"N@10 vs {name}", "p (N@10)" if position == 0 else f"p (N@10) vs {name}"]
    header += ["epochs", "train min"]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: |" + " ---: |" * (len(header) - 2)]
    popularity = chosen[0]["metrics"]
    if all(f"test/popularity/{m}" in popularity for m in TABLE_METRICS):
        cells = " | ".join(f"{popularity[f'test/popularity/{m}']:.4f}" for m in TABLE_METRICS)
        lines.append(f"| popularity | - | {cells} |" + " |" * (2 * len(COMPARED_METRICS) * len(against) + 2))
    for method, runs in methods.items():
        cells = " | ".join(_mean_std([r["metrics"][f"test/{m}"] for r in runs]) for m in TABLE_METRICS)
        users, comparisons = per_user[method], []
        for name, baseline in against:
            for metric in COMPARED_METRICS:
                change, p_value = "", ""
                if baseline and method != name:
                    change = f"{100 * (_mean_metric(runs, metric) / _mean_metric(baseline, metric) - 1):+.1f}%"
                    reference = per_user[name]
                    comparable = users is not None and reference is not None
                    if comparable and len(users[metric]) == len(reference[metric]):
                        p_value = _p(paired_randomization_test(users[metric], reference[metric]))
                comparisons += [change, p_value]
        epochs = np.mean([r["epochs"] for r in runs if r.get("epochs") is not None])
        minutes = np.mean([r["train_seconds"] for r in runs if r.get("train_seconds") is not None]) / 60
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {method} | {seeds} | {cells} | {' | '.join(comparisons)} | {epochs:.1f} | {minutes:.1f} |")
    return "\n".join(lines) + "\n\n" + machines_line(chosen)


def render_headline_table(rows: list[dict], dataset: str, budget: str, labels: list[str], results_dir: Path) -> str:
    """A front-page table: the named rows in the order given, Recall/NDCG@10 and their change against TIGER
    and SASRec (with the paired p-value in the same cell), in at most 8 columns.

    ``labels`` are exact row labels (``tiger``, ``tiger-cf+soda``, ``tiger [bf16-eager]``); a label with no
    runs at ``budget`` is left out, so a table can name a row before it lands.
    """
    chosen = [r for r in rows if r["budget"] == budget and r.get("protocol", "leave-one-out") == "leave-one-out"]
    methods = _by_method(chosen)
    shown = [label for label in labels if label in methods]
    if not shown:
        return f"_No {budget}-budget runs of {', '.join(labels)} in `benchmarks/results/{dataset}.jsonl` yet._"
    compared = [label for label in dict.fromkeys([*shown, *BASELINE_PAIR]) if label in methods]
    per_user = {label: _mean_per_user(methods[label], dataset, results_dir) for label in compared}
    header = ["method", "seeds", "R@10", "N@10"]
    header += [f"{short} vs {name}" for name in BASELINE_PAIR for short in ("R@10", "N@10")]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for label in shown:
        runs = methods[label]
        cells = [_mean_std([r["metrics"][f"test/{metric}@10"] for r in runs]) for metric in ("recall", "ndcg")]
        for name in BASELINE_PAIR:
            baseline = methods.get(name, [])
            for metric in COMPARED_METRICS:
                if not baseline or label == name:
                    cells.append("")
                    continue
                change = f"{100 * (_mean_metric(runs, metric) / _mean_metric(baseline, metric) - 1):+.1f}%"
                users, reference = per_user.get(label), per_user.get(name)
                if users is not None and reference is not None and len(users[metric]) == len(reference[metric]):
                    change += f" (p {_p(paired_randomization_test(users[metric], reference[metric]))})"
                cells.append(change)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + machines_line([r for label in shown for r in methods[label]])


def machines_line(rows: list[dict]) -> str:
    """Which machines the table's runs ran on, with how many runs each (float results differ between CPUs)."""
    counts: dict[str, int] = {}
    for row in rows:
        machine = row.get("machine") or "unknown machine"
        counts[machine] = counts.get(machine, 0) + 1
    return "Runs measured on: " + "; ".join(f"{machine} ({count})" for machine, count in sorted(counts.items())) + "."


def row_label(row: dict) -> str:
    """A table row's name: the method, and the ablation variant in brackets when there is one."""
    return row["method"] + (f" [{row['variant']}]" if row.get("variant") else "")


def _by_method(rows: list[dict]) -> dict[str, list[dict]]:
    methods: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (row_label(r), r["seed"])):
        methods.setdefault(row_label(row), []).append(row)
    return methods


def render_codes_table(rows: list[dict], budget: str) -> str:
    """Code figures of each semantic-ID method at ``budget``: the codes it was evaluated with, and churn.

    Level usage and collision rate of the final table (``codes/final/...`` for DIGER, the fitted codes
    otherwise) and, for methods whose codes move, the share of items whose code at each level differs
    from the table training started with; mean over seeds.
    """
    chosen = [r for r in rows if r["budget"] == budget and "codes/collision_rate" in r["metrics"]]
    if not chosen:
        return f"_No {budget}-budget semantic-ID runs yet._"
    levels = sorted({k.split("/")[1] for r in chosen for k in r["metrics"] if k.startswith("codes/level")})
    header = ["method", "seeds", *[f"{lvl} usage" for lvl in levels], "collisions"]
    header += [f"churn {lvl}" for lvl in levels]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: |" + " ---: |" * (len(header) - 2)]

    def mean(runs: list[dict], key: str) -> str:
        values = [r["metrics"][key] for r in runs if key in r["metrics"]]
        return f"{100 * float(np.mean(values)):.1f}%" if values else "-"

    for method, runs in _by_method(chosen).items():
        final = "codes/final/" if any("codes/final/collision_rate" in r["metrics"] for r in runs) else "codes/"
        cells = [mean(runs, f"{final}{lvl}/usage") for lvl in levels] + [mean(runs, f"{final}collision_rate")]
        cells += [mean(runs, f"codes/final/churn_from_start/{lvl}") for lvl in levels]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {method} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SELECTION_METRICS = ("validation/best_ndcg@10", "test/recall@10", "test/ndcg@10")


def render_selection_table(rows: list[dict], budget: str, baseline: list[dict]) -> str:
    """A hyperparameter choice made on validation: each run's best validation NDCG@10 beside its test numbers.

    The row of highest mean validation NDCG@10 is the one chosen (marked); its test numbers are not
    what chose it. ``baseline`` (TIGER's runs at the same budget) gives the reference row and the change.
    """
    chosen = [r for r in rows if r["budget"] == budget and "validation/best_ndcg@10" in r["metrics"]]
    if not chosen:
        return f"_No {budget}-budget runs with a validation NDCG@10 yet._"
    methods = _by_method(chosen)
    best = max(methods, key=lambda name: np.mean([r["metrics"]["validation/best_ndcg@10"] for r in methods[name]]))
    base = [r for r in baseline if r["budget"] == budget]
    header = "| run | seeds | validation N@10 | test R@10 | test N@10 | R@10 vs tiger | chosen |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for name, runs in [*([("tiger", base)] if base else []), *methods.items()]:
        cells = [_mean_std([r["metrics"][key] for r in runs]) for key in SELECTION_METRICS]
        change = ""
        if base and name != "tiger":
            change = f"{100 * (_mean_metric(runs, 'recall@10') / _mean_metric(base, 'recall@10') - 1):+.1f}%"
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + f" | {change} | {'yes' if name == best else ''} |")
    return "\n".join(lines) + "\n\n" + machines_line(base + chosen)


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _mean_metric(runs: list[dict], metric: str) -> float:
    return float(np.mean([r["metrics"][f"test/{metric}"] for r in runs]))


def _mean_per_user(runs: list[dict], dataset: str, results_dir: Path) -> dict[str, np.ndarray] | None:
    """Per-user Recall@10 and NDCG@10, each averaged over a method's seeds (None when a run's ranks are missing)."""
    per_seed = [load_ranks(dataset, r["id"], results_dir) for r in runs]
    if not per_seed or any(ranks is None for ranks in per_seed):
        return None
    return {
        metric: np.mean([measure(ranks) for ranks in per_seed], axis=0) for metric, measure in COMPARED_METRICS.items()
    }


def replace_blocks(text: str, opening: str, closing: str, render) -> str:
    """``text`` with the body of every ``<opening>KEY -->`` ... ``<closing>`` block replaced by ``render(KEY)``."""
    out, position = [], 0
    while (start := text.find(opening, position)) >= 0:
        close = text.index("-->", start) + 3
        stop = text.find(closing, close)
        if stop < 0:
            raise ValueError(f"{text[start:close]} has no closing {closing}: add it after the table")
        out += [text[position:close], "\n", render(text[start + len(opening) : close - 3].strip()), "\n"]
        position = stop
    out.append(text[position:])
    return "".join(out)


def render_readme(text: str, results_dir: Path = RESULTS) -> str:
    """``text`` with every ``<!-- results:... -->`` and ``<!-- speed:... -->`` block re-rendered from the files."""

    def results_block(key: str) -> str:
        dataset, budget, *rest = key.split(":")
        everything = read_results(results_dir / f"{dataset}.jsonl")
        rows = everything
        if len(rest) > 1 and rest[1]:  # only the methods named (by prefix), e.g. ``tiger,diger`` on a method's page
            prefixes = tuple(rest[1].split(","))
            rows = [row for row in rows if row["method"].startswith(prefixes)]
        protocol = rest[0] if rest else "leave-one-out"
        if protocol == "headline":  # exact labels, in order: ``results:beauty:converged:headline:tiger,sasrec``
            return render_headline_table(everything, dataset, budget, rest[1].split(","), results_dir)
        if protocol == "validation":  # a choice made on validation, beside TIGER at the same budget
            return render_selection_table(rows, budget, [r for r in everything if r["method"] == "tiger"])
        if protocol == "codes":
            return render_codes_table(rows, budget)
        baselines = tuple(rest[2].split(",")) if len(rest) > 2 else None  # e.g. ``tiger,sasrec``
        return render_table(rows, dataset, budget, protocol, results_dir, baselines)

    text = replace_blocks(text, "<!-- results:", "<!-- /results -->", results_block)
    return replace_blocks(text, "<!-- speed:", "<!-- /speed -->", lambda stem: render_speed_table(stem, results_dir))


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
    stale = []
    for page, current in pages_with_tables().items():
        rendered = render_readme(current)
        if rendered != current:
            stale.append(page)
            if not getattr(args, "check", False):
                page.write_text(rendered)
    if getattr(args, "check", False) and stale:
        names = ", ".join(str(page.relative_to(ROOT)) for page in stale)
        print(f"results tables in {names} differ from benchmarks/results: run `python benchmarks/quality.py render`")
        return 1
    return 0


def pages_with_tables() -> dict[Path, str]:
    """The README and every docs page that holds a results block, with the text read once."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    texts = {page: page.read_text() for page in pages}
    return {page: text for page, text in texts.items() if "<!-- results:" in text or "<!-- speed:" in text}


if __name__ == "__main__":
    sys.exit(main())
