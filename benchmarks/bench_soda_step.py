"""Training-step time of CE + SODA against CE alone, on the same model and batches.

SODA promises to be a cheap plug-in: it reuses the decoder's teacher-forced logits and the
quantizer's item logits that the joint step computes anyway, and adds per-level log-softmaxes and
one (B x B) score matrix. This measures that promise as a ratio in one run: the same joint SID-T5
(demo size, TIGER's frozen codes, no noise) over real Scientific batches, optimizer step included,
interleaving the two objectives so that machine noise hits both alike. Target: ratio < 1.30.

    python benchmarks/bench_soda_step.py [--steps 30] [--batch-size 256] [--negatives in_batch|both]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict

import torch

import sidrec  # noqa: F401
from sidrec import SemanticIDTokenizer, SIDT5Config
from sidrec.training.data import SemanticIDCollator, load_sequential_data
from sidrec.training.methods import build_objectives
from sidrec.training.methods.diger import JointSIDT5
from sidrec.training.methods.diger.uncertainty_decay import build_uncertainty_decay
from sidrec.training.pipeline import build_codes, embed_catalogue
from sidrec.training.recipe import load_recipe


def step_seconds(model, optimizer, objectives, batches) -> list[float]:
    """Wall time of each full step: forward, every objective, backward, optimizer step."""
    times = []
    for batch in batches:
        started = time.perf_counter()
        outputs = model(**batch)
        loss = sum(objective.weight * objective(model, batch, outputs)[0] for objective in objectives.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/scientific-tiger-soda-demo.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per objective set")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--negatives", default="in_batch", choices=["in_batch", "sampled", "both"])
    parser.add_argument("--num-negatives", type=int, default=16)
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    args = parser.parse_args()

    torch.manual_seed(0)
    recipe = load_recipe(args.config, ["quantizer.epochs=20"])  # the fit's quality does not change step time
    data = load_sequential_data(recipe.data, verbose=False)
    embeddings = embed_catalogue(recipe, data)
    fit = build_codes(recipe, embeddings)
    tokenizer = SemanticIDTokenizer(item_codes=fit.codes, num_levels=fit.codes.size(1), codebook_size=256)
    config = SIDT5Config(num_code_levels=fit.codes.size(1), codebook_size=256, **asdict(recipe.model))
    decay = build_uncertainty_decay("none", fit.quantizer.config.num_levels, 256)
    model = JointSIDT5.from_recommender_config(config, fit.quantizer, embeddings, fit.codes, decay, trainable=False)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sampled = args.num_negatives if args.negatives != "in_batch" else 0
    collator = SemanticIDCollator(tokenizer, item_index=True, num_negatives=sampled)
    train = data.splits["train"].shuffle(seed=0)
    batches = [
        collator([train[i] for i in range(start, start + args.batch_size)])
        for start in range(0, (args.steps + 2) * args.batch_size, args.batch_size)
    ]
    plain = build_objectives({"ce": 1.0})
    soda = build_objectives({"ce": 1.0, "soda": {"weight": 1.0, "negatives": args.negatives}})
    step_seconds(model, optimizer, plain, batches[:2])  # warm-up
    step_seconds(model, optimizer, soda, batches[:2])
    ce_times, soda_times = [], []
    for batch in batches[2:]:  # interleaved: the same batch under both objective sets
        without_negatives = {k: v for k, v in batch.items() if k != "negative_items"}  # CE does not need them
        ce_times += step_seconds(model, optimizer, plain, [without_negatives])
        soda_times += step_seconds(model, optimizer, soda, [batch])
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    result = {
        "ce_step_seconds": median(ce_times),
        "ce_plus_soda_step_seconds": median(soda_times),
        "ratio": median(soda_times) / median(ce_times),
        "steps": len(ce_times),
        "batch_size": args.batch_size,
        "negatives": args.negatives,
        "num_negatives": sampled,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
