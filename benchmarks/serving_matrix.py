"""The serving matrix: fast ``recommend`` against stock ``generate`` + trie on every request shape.

    python benchmarks/serving_matrix.py --output benchmarks/results/serving_matrix_cpu.json
    python benchmarks/serving_matrix.py --profile tiger 5 1     # where one batch-1 request's time goes

Cells are {demo-size, TIGER-size} x {history 5, 20} x {batch 1, 32, 256}, beam 20, top-10, 4-level
codes of 256 over Beauty's 12,101 items (random weights: the cost does not depend on them). Each cell
times both paths on the same users in the same process, so its ratio holds whatever else the machine
is doing; ``same_top_k`` checks the two rankings agree. Batch 1 is a real request, so its median
latency is reported too. ``--profile`` prints ``torch.profiler``'s top operators for one cell's fast
path, split into time inside ATen kernels and the rest (Python, dispatch), which says whether a
cell is bound by arithmetic or by per-step overhead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_recommend import measure, serving_cell  # noqa: E402  (a sibling script)
from quality_runner import machine  # noqa: E402
from speed_tables import serving_matrix_table  # noqa: E402

SIZES = ("demo", "tiger")
HISTORIES = (5, 20)
BATCHES = (1, 32, 256)
USERS = {1: 16, 32: 64, 256: 256}  # enough batches for a stable median at each shape


def profile(size: str, history: int, batch: int, device: str) -> None:
    """Top operators of the fast path on one cell, and the share of wall time spent in them."""
    import time

    model, tokenizer, histories = serving_cell(size, history, batch, device=device)
    for _ in range(3):
        model.recommend(histories, tokenizer, top_k=10, num_beams=20)
    calls = 10
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(calls):
            model.recommend(histories, tokenizer, top_k=10, num_beams=20)
        wall = (time.perf_counter() - started) / calls
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6 / calls
    print(
        f"{size}-size, history {history}, batch {batch}: {1000 * wall:.2f} ms per call (under the profiler), "
        f"{1000 * kernels:.2f} ms of it inside aten operators ({kernels / wall:.0%}); the rest is Python, "
        "dispatch and the profiler's own overhead"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--histories", nargs="+", type=int, default=list(HISTORIES))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--output", default=None, help="write the cells as JSON here")
    parser.add_argument("--profile", nargs=3, metavar=("SIZE", "HISTORY", "BATCH"), default=None)
    args = parser.parse_args()
    if args.profile:
        size, history, batch = args.profile
        profile(size, int(history), int(batch), args.device)
        return
    rows = []
    for size in args.sizes:
        for history in args.histories:
            for batch in args.batches:
                row = measure(size, history, batch, USERS.get(batch, 4 * batch), device=args.device)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(serving_matrix_table(rows))
    if args.output:
        report = {"machine": machine(), "threads": torch.get_num_threads()}
        Path(args.output).write_text(json.dumps({**report, "cells": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
