"""The table renderer of the results harness: the statistics over seeds and users, and the pages' tables.

Each table reads the rows of ``benchmarks/results/<dataset>.jsonl`` and the runs' saved per-user ranks: mean and
standard deviation over seeds, the relative change against a baseline and a paired randomization test over
users, whose per-user Recall@10 and NDCG@10 come from ``training.metrics`` (the numbers a run reports are the
means of the same per-user values). ``render_readme`` fills every ``<!-- results:... -->`` block of a page
(the block grammar is in ``quality.py --help``), every ``<!-- speed:... -->`` block (``speed_tables.py``) and
every ``<!-- checkpoints -->`` block (``checkpoint_tables.py``); ``render_pages`` does it for the README, every
docs page and ``checkpoints/README.md``. No number in those tables is typed by hand.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from checkpoint_tables import checkpoints_table  # a sibling script
from quality_runner import RESULTS, ROOT, load_ranks, read_results  # a sibling script
from speed_tables import render_speed_table  # a sibling script

README = ROOT / "README.md"
KS = (5, 10, 20)
BASELINE_PAIR = ("tiger", "sasrec")  # what every front-page row is compared with
TABLE_METRICS = [f"{name}@{k}" for name in ("recall", "ndcg") for k in KS]


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
    """Per-user Recall@k from 0-based ranks (-1 = not ranked), as ``training.metrics`` defines it.

    Leave-one-out: one target rank per user, so Recall@k is hit@k. Item sets (an object array of
    per-user rank arrays, DMRec's split): the share of the user's held-out items ranked below ``k``.
    """
    return _per_user_metrics(ranks, k)[f"recall@{k}"]


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k from 0-based ranks (-1 = not ranked), as ``training.metrics`` defines it.

    Leave-one-out: ``1 / log2(rank + 2)`` when the target is ranked below ``k``, else 0 (the ideal DCG
    is 1). Item sets: the discounted hits of the user's held-out items divided by the ideal DCG of
    ``min(k, |held-out|)`` hits.
    """
    return _per_user_metrics(ranks, k)[f"ndcg@{k}"]


def _per_user_metrics(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every per-user metric at ``k`` from saved ranks, by the package's one implementation of the metrics.

    The saved ranks become the (users, k) hit matrix ``per_user_ranking_metrics`` reads: user u's row is True
    at each rank below ``k`` of its relevant items, whose count (1 for leave-one-out) is the ideal DCG's.
    """
    import torch  # here, not at the top: `quality.py run` needs neither torch nor the package to start

    from sidrec.training.metrics import per_user_ranking_metrics

    if ranks.dtype == object:  # item sets: each user's list of ranks, of any length
        num_relevant = np.array([len(user) for user in ranks], dtype=np.int64)
        flat = np.concatenate([np.asarray(user, dtype=np.int64) for user in ranks])
    else:
        num_relevant = np.ones(len(ranks), dtype=np.int64)
        flat = np.asarray(ranks, dtype=np.int64)
    users = np.repeat(np.arange(len(num_relevant)), num_relevant)
    below = (flat >= 0) & (flat < k)
    hits = torch.zeros((len(num_relevant), k), dtype=torch.bool)
    hits[torch.as_tensor(users[below]), torch.as_tensor(flat[below], dtype=torch.long)] = True
    measured = per_user_ranking_metrics(hits, torch.as_tensor(num_relevant), ks=(k,))
    return {name: values.numpy() for name, values in measured.items()}


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
    """``text`` with every ``<!-- results:... -->``, ``<!-- speed:... -->`` and ``<!-- checkpoints -->`` block
    re-rendered from the files (the checkpoints from ``checkpoints/``, whatever ``results_dir`` is)."""

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

    def checkpoints_block(key: str) -> str:  # ``checkpoints`` (all) or ``checkpoints:a,b``
        return checkpoints_table(key.removeprefix(":"))

    text = replace_blocks(text, "<!-- results:", "<!-- /results -->", results_block)
    text = replace_blocks(text, "<!-- speed:", "<!-- /speed -->", lambda stem: render_speed_table(stem, results_dir))
    return replace_blocks(text, "<!-- checkpoints", "<!-- /checkpoints -->", checkpoints_block)


def render_pages(write: bool = True) -> list[Path]:
    """The pages whose tables differ from what the results files render, rewritten unless ``write`` is False."""
    stale = []
    for page, current in pages_with_tables().items():
        rendered = render_readme(current)
        if rendered != current:
            stale.append(page)
            if write:
                page.write_text(rendered)
    return stale


def pages_with_tables() -> dict[Path, str]:
    """The README, every docs page and the checkpoints' README that hold a block, with the text read once."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "checkpoints" / "README.md"]
    texts = {page: page.read_text() for page in pages if page.exists()}
    openings = ("<!-- results:", "<!-- speed:", "<!-- checkpoints")
    return {page: text for page, text in texts.items() if any(opening in text for opening in openings)}
