"""Markdown tables of the speed and scale result files, for the scripts that print them and for the pages.

``python benchmarks/quality.py render`` fills every ``<!-- speed:<file stem> -->`` ... ``<!-- /speed -->``
block of the README and docs from ``benchmarks/results/<file stem>.json``, so, like the quality
tables, no speed number on a page is typed by hand (``tests/test_quality.py`` checks they match).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def serving_matrix_table(cells: list[dict]) -> str:
    """One row per serving cell: both paths' users/s, the ratio, the median call latency, top-k agreement."""
    lines = [
        "| model | history | batch | `recommend` users/s | stock `generate` + trie users/s | speed-up "
        "| p50 ms per call (fast / stock) | same top-k |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for cell in cells:
        lines.append(
            f"| {cell['size']} | {cell['history']} | {cell['batch_size']} | {cell['recommend_users_per_s']} | "
            f"{cell['generate_trie_users_per_s']} | {cell['speedup']}x | {cell['recommend_p50_ms']} / "
            f"{cell['generate_trie_p50_ms']} | {'yes' if cell['same_top_k'] else 'NO'} |"
        )
    return "\n".join(lines)


def _size(result: dict) -> str:
    return f"{result['items']:,} items, {result['interactions'] / 1e6:g}M interactions"


def pipeline_table(results: list[dict]) -> str:
    """Stage x catalogue size (seconds / peak resident MB), then each stage's notes and any failed size.

    Stages marked ``(setup)`` build the synthetic inputs and are left out of the table.
    """
    finished = [result for result in results if "stages" in result]
    labels = [
        label
        for label in dict.fromkeys(row["stage"] for result in finished for row in result["stages"])
        if not label.endswith("(setup)")
    ]
    lines = [
        "| stage | " + " | ".join(f"{_size(result)}: s / peak MB" for result in finished) + " |",
        "| --- |" + " ---: |" * len(finished),
    ]
    for label in labels:
        cells = []
        for result in finished:
            row = next((row for row in result["stages"] if row["stage"] == label), None)
            cells.append("-" if row is None else f"{row['seconds']} / {row['peak_mb']:,}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = [
        f"- {result['items']:,} items: the trie holds {result['trie_mb']} MB"
        for result in finished
        if "trie_mb" in result
    ]
    notes += [
        f"- {result['items']:,} items, {row['stage']}: {row['note']}"
        for result in finished
        for row in result["stages"]
        if "note" in row
    ]
    failed = [result for result in results if "failed" in result]
    notes += [f"- {result['items']:,} items: failed ({'; '.join(result['failed'])})" for result in failed]
    return "\n".join(lines + ([""] + notes if notes else []))


def code_fits_table(result: dict) -> str:
    """One row per code-fit option: each level's usage (perplexity), collisions, the largest group, fit time."""
    options = [name for name, value in result.items() if isinstance(value, dict) and "stats" in value]
    levels = sorted({key.split("/")[0] for name in options for key in result[name]["stats"] if key.startswith("level")})
    lines = [
        "| fit | "
        + " | ".join(f"{level} usage (ppl)" for level in levels)
        + " | collisions | largest group | seconds |",
        "| --- |" + " ---: |" * (len(levels) + 3),
    ]
    for name in options:
        stats = result[name]["stats"]
        usage = [f"{stats[f'{level}/usage']:.0%} ({stats[f'{level}/perplexity']:.0f})" for level in levels]
        lines.append(
            f"| {name} | " + " | ".join(usage) + f" | {stats['collision_rate']:.1%} | "
            f"{int(stats['max_items_per_code'])} | {result[name]['seconds']:.0f} |"
        )
    lines += [
        "",
        f"{result['items']:,} items, `{result['recipe']}` ({result['epochs']} RQ-VAE epochs), {result['machine']}, "
        f"{result['date']}.",
    ]
    return "\n".join(lines)


def train_speed_table(result: dict) -> str:
    """Examples per second of the real training path, today's settings against the new ones, and the ratio."""
    lines = ["| settings | overrides | examples/s (each round) | median |", "| --- | --- | --- | ---: |"]
    for name, overrides in result["variants"].items():
        rates = ", ".join(str(rate) for rate in result["examples_per_s"][name])
        lines.append(
            f"| {name} | `{' '.join(overrides)}` | {rates} | {statistics.median(result['examples_per_s'][name])} |"
        )
    lines += [
        "",
        f"Speed-up new / today: **{result['speedup']}x**. `{result['recipe']}`, {result['steps']} timed steps after "
        f"{result['warmup']} warm-up steps, {result['rounds']} alternated rounds, {result['threads']} threads, "
        f"{result['machine']}, {result['date']}.",
    ]
    return "\n".join(lines)


RENDERERS = {
    "serving_matrix": lambda data: serving_matrix_table(data["cells"]),
    "scale_pipeline": pipeline_table,
    "code_fits": code_fits_table,
    "train_speed": train_speed_table,
}


def render_speed_table(stem: str, results_dir: Path) -> str:
    """The table of ``results_dir/<stem>.json``, by the kind its name starts with."""
    data = json.loads((results_dir / f"{stem}.json").read_text())
    for prefix, render in RENDERERS.items():
        if stem.startswith(prefix):
            return render(data)
    known = ", ".join(f"{prefix}*" for prefix in RENDERERS)
    raise ValueError(f"no table renderer for benchmarks/results/{stem}.json (known: {known})")
