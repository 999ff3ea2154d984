"""Code usage, perplexity and collisions of each quantizer fit option on a recipe's catalogue, in one run.

    python benchmarks/code_fits.py configs/beauty-tiger.yaml --output benchmarks/results/code_fits_beauty.json

Embeds the recipe's catalogue (cached), then fits the codes once per option of ``OPTIONS`` (recipe
overrides of the ``quantizer`` section) with the recipe's seed, and writes per option: each level's
usage and perplexity, the collision rate, the largest collision group, the final loss, the per-epoch
usage curve (every 10th epoch) and the seconds the fit took. Nothing here reads the users' histories:
the choice among fits it supports is a choice on the catalogue alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sidrec  # noqa: F401
from sidrec.training.data import load_sequential_data
from sidrec.training.recipe import load_recipe
from sidrec.training.stages.codes import build_codes, embed_catalogue

OPTIONS: dict[str, list[str]] = {
    "rqvae": [],  # the recipe's fit as it is (its epochs)
    "rqvae+restarts": ["quantizer.restart_dead_codes=true"],
    "rqvae+restarts+sinkhorn-last": ["quantizer.restart_dead_codes=true", "quantizer.balance_last_level=true"],
    "rq-kmeans": ["quantizer.method=rq_kmeans", "quantizer.kmeans_iterations=50"],
    "rq-kmeans+sinkhorn-last": [
        "quantizer.method=rq_kmeans",
        "quantizer.kmeans_iterations=50",
        "quantizer.balance_last_level=true",
    ],
}


def cpu_name() -> str:
    """The processor's model name (the results of different machines are never compared)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--options", nargs="*", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    base = load_recipe(args.recipe)
    data = load_sequential_data(base.data, verbose=False)
    embeddings = embed_catalogue(base, data)
    results = {
        "recipe": args.recipe,
        "items": int(embeddings.size(0)),
        "epochs": base.quantizer.epochs,
        "machine": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in args.options:
        recipe = load_recipe(args.recipe, OPTIONS[name])
        started = time.time()
        fit = build_codes(recipe, embeddings)
        seconds = time.time() - started
        row = {
            "overrides": OPTIONS[name],
            "stats": {key: round(float(value), 4) for key, value in fit.stats.items()},
            "final_loss": round(fit.loss_history[-1], 5) if fit.loss_history else None,
            "restarted_codes": fit.restarted_codes,
            "usage_curve": {
                str(i + 1): [round(u, 3) for u in usage]
                for i, usage in enumerate(fit.usage_history)
                if (i + 1) % 10 == 0 or i == 0
            },
            "seconds": round(seconds, 1),
        }
        results[name] = row
        print(name, fit.summary(), f"({seconds:.0f} s)", flush=True)
        if args.output:  # after every option: a long grid interrupted keeps what it measured
            Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
