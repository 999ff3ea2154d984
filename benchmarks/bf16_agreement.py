"""bf16 serving against fp32 on a trained run's real test users: quality, agreement and speed in one run.

    python benchmarks/bf16_agreement.py runs/bench/scientific/scientific-tiger-demo/converged/seed42

Loads the run's saved model and tokenizer and its recipe's data, ranks every test user with
``recommend(precision="fp32")`` and ``recommend(precision="bf16")`` (the same beam width as the run's
evaluation), and prints Recall/NDCG@10 of both, the mean share of each user's fp32 top-10 that the
bf16 top-10 also holds, and users per second of both (bf16 / fp32 is the ratio to read; the absolute
figures depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

import sidrec  # noqa: F401  (Auto registration)
from sidrec.training.data import load_sequential_data
from sidrec.training.ranking import score_rankings
from sidrec.training.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's output_dir (model/ and recipe.yaml)")
    parser.add_argument("--users", type=int, default=None, help="only the first test users")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", default=None, help="write the result JSON here")
    args = parser.parse_args()

    recipe = load_recipe(args.run / "recipe.yaml")
    model = AutoModel.from_pretrained(args.run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(args.run / "model")
    split = load_sequential_data(recipe.data, verbose=False).splits["test"]
    if args.users:
        split = split.select(range(min(args.users, len(split))))
    rows = split.to_dict()
    beams = recipe.evaluation.num_beams
    result = {"run": str(args.run), "users": len(split), "num_beams": beams, "device": platform.processor() or "cpu"}
    rankings = {}
    for precision in ("fp32", "bf16"):
        model.recommend(rows["history"][:8], tokenizer, top_k=10, num_beams=beams, precision=precision)  # warm-up
        started = time.perf_counter()
        ranked = model.recommend(
            rows["history"], tokenizer, top_k=10, num_beams=beams, batch_size=args.batch_size, precision=precision
        )
        seconds = time.perf_counter() - started
        rankings[precision] = ranked.items
        metrics = score_rankings(ranked.items, rows, (10,), None)
        result[f"{precision}/recall@10"] = round(metrics["recall@10"], 4)
        result[f"{precision}/ndcg@10"] = round(metrics["ndcg@10"], 4)
        result[f"{precision}/users_per_s"] = round(len(split) / seconds, 1)
    pairs = zip(rankings["fp32"].tolist(), rankings["bf16"].tolist(), strict=True)
    result["top10_overlap"] = round(sum(len(set(a) & set(b)) / 10 for a, b in pairs) / len(split), 4)
    result["bf16_speedup"] = round(result["bf16/users_per_s"] / result["fp32/users_per_s"], 2)
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
