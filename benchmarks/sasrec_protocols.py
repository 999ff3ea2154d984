"""One saved SASRec run read both ways: the user's own items kept as candidates (sidrec's protocol) and dropped
(``evaluation.exclude_history``, RecBole-style full-sort evaluation), on the same test users.

Two runs trained on different machines differ by more than their protocol (float arithmetic differs between
CPUs and training amplifies it), so the protocol's effect is measured on one model at a time:

    python benchmarks/sasrec_protocols.py runs/bench/beauty/beauty-sasrec+exclude-history/converged/seed42 \
        --output benchmarks/results/sasrec_protocols.json

Each run adds an entry ``{run: {"kept": metrics, "excluded": metrics}}`` to the output file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoModel

import sidrec  # noqa: F401  (registers the model classes with AutoModel)
from sidrec.training.data import DataConfig, load_sequential_data
from sidrec.training.ranking import SequenceRanker, evaluate_ranker
from sidrec.training.recipe import load_recipe


def both_protocols(run_dir: Path, batch_size: int = 1024) -> dict[str, dict[str, float]]:
    """Recall/NDCG@5/10/20 of the run's saved model on its test users, history kept and history excluded."""
    model = AutoModel.from_pretrained(str(run_dir / "model"))
    recipe = load_recipe(run_dir / "recipe.yaml")
    data = load_sequential_data(DataConfig(**recipe.to_dict()["data"]), verbose=False)
    test = data.splits["test"]
    return {
        name: evaluate_ranker(SequenceRanker(model, batch_size, exclude), test, tuple(recipe.evaluation.ks))
        for name, exclude in (("kept", False), ("excluded", True))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished SASRec run directories (output_dir)")
    parser.add_argument("--output", type=Path, help="a JSON file to add the results to")
    args = parser.parse_args()
    results = json.loads(args.output.read_text()) if args.output and args.output.exists() else {}
    for run_dir in args.runs:
        readings = both_protocols(run_dir)
        key = "/".join(run_dir.parts[-4:])  # <data set>/<run>/<budget>/<seed>, as the harness lays runs out
        results[key] = readings
        kept, excluded = readings["kept"], readings["excluded"]
        print(
            f"{key}: Recall@10 {kept['recall@10']:.4f} kept -> {excluded['recall@10']:.4f} excluded, "
            f"NDCG@10 {kept['ndcg@10']:.4f} -> {excluded['ndcg@10']:.4f}"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
