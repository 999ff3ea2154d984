"""Training throughput: examples per second of SID-T5 training steps.

Two modes.

``synthetic`` (default): forward, cross-entropy, backward and AdamW on synthetic batches of one shape
(the cost of a step does not depend on the token values), fp32 or bf16 autocast, after warm-up steps;
CUDA is synchronised around the timed loop. The GPU suite runs it at batch 256 and 1024 in both
precisions.

    python benchmarks/bench_train.py [--size tiger|demo] [--batch-size 256] [--history 20] [--precision bf16]

``--real RECIPE``: the real training path. The recipe's data, codes (RQ-KMeans, fitted in seconds: the
codes' values do not change a step's cost), model, collator, length-grouped sampler and ``SIDTrainer``,
trained ``--warmup + --steps`` steps with evaluation and saving off, once per variant of ``VARIANTS``
(recipe overrides), the variants alternated for ``--rounds`` rounds, each timing in a fresh process so
that no variant's process-wide settings or heap reach another's. Writes both rates (the median over
rounds of examples per second after the warm-up) and ``speedup`` = new / today.

    python benchmarks/bench_train.py --real configs/beauty-tiger.yaml --output benchmarks/results/train_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

import sidrec  # noqa: F401
from sidrec import SIDT5Config, SIDT5ForConditionalGeneration

SIZES = {
    "tiger": dict(d_model=128, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=6),
    "demo": dict(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4),
}

# The real-path variants: today's defaults against the new ones (recipe overrides over the recipe itself).
# `bench.todays_step=true` trains with the step as it was before the CPU-step changes (see _todays_step).
VARIANTS: dict[str, list[str]] = {
    "today": ["training.precision=fp32", "model.attn_implementation=sdpa", "bench.todays_step=true"],
    "new": ["training.precision=bf16", "model.attn_implementation=eager", "training.fast_dropout=true"],
}


def synthetic(args) -> dict:
    torch.manual_seed(0)
    config = SIDT5Config(num_code_levels=4, codebook_size=256, **SIZES[args.size])
    model = SIDT5ForConditionalGeneration(config).to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    length = 4 * args.history + 1
    input_ids = torch.randint(3, config.vocab_size, (args.batch_size, length), device=args.device)
    labels = torch.randint(3, config.vocab_size, (args.batch_size, 5), device=args.device)
    mask = torch.ones_like(input_ids)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"

    def step() -> float:
        with torch.autocast(device_type, dtype=dtype, enabled=args.precision == "bf16"):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "device": torch.cuda.get_device_name() if device_type == "cuda" else "cpu",
        "size": args.size,
        "batch_size": args.batch_size,
        "history": args.history,
        "precision": args.precision,
        "steps": args.steps,
        "examples_per_s": round(args.batch_size * args.steps / seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


class _StepClock(TrainerCallback):
    """Wall time of every training step after the first ``warmup`` (the batch is fetched inside the step)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.seconds = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.started = time.perf_counter()
        elif state.global_step == state.max_steps:
            self.seconds = time.perf_counter() - self.started


def _todays_step():
    """``SIDTrainer`` training as it trained before the CPU-step changes of issue 34.

    That is: PyTorch's deterministic mode with its default ``fill_uninitialized_memory`` and glibc's default
    large-block policy. (The feed-forward cast that ``skip_autocast_round_trip`` removes exists only under
    autocast, so today's fp32 step is the same with or without it.) The baseline of the speed-up.
    """
    from transformers import Trainer

    from sidrec.training.trainer import SIDTrainer

    class TodaysStep(SIDTrainer):
        def train(self, *args, **kwargs):
            before = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                return Trainer.train(self, *args, **kwargs)
            finally:
                torch.use_deterministic_algorithms(before)

    return TodaysStep


def real_rate(recipe_path: str, overrides: list[str], warmup: int, steps: int, workdir: Path) -> float:
    """Examples per second of ``steps`` real training steps of the recipe (after ``warmup`` steps).

    ``bench.todays_step=true`` among the overrides trains with the step as it was (:func:`_todays_step`).
    """
    from sidrec.training.data import SemanticIDCollator, load_sequential_data
    from sidrec.training.methods import build_objectives
    from sidrec.training.recipe import load_recipe
    from sidrec.training.stages.fitting import training_arguments, with_lengths
    from sidrec.training.stages.models import build_recommender
    from sidrec.training.trainer import SIDTrainer

    todays_step = "bench.todays_step=true" in overrides
    overrides = [item for item in overrides if not item.startswith("bench.")]
    recipe = load_recipe(recipe_path, ["quantizer.method=rq_kmeans", *overrides])
    data = load_sequential_data(recipe.data, verbose=False)
    built = build_recommender(recipe, data, say=lambda *_: None)
    clock = _StepClock(warmup)
    arguments = training_arguments(
        recipe,
        workdir,
        {
            "max_steps": warmup + steps,
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "logging_steps": 10_000,
            "disable_tqdm": True,
        },
    )
    trainer_class = _todays_step() if todays_step else SIDTrainer
    trainer = trainer_class(
        model=built.model,
        args=arguments,
        train_dataset=with_lengths(data.splits["train"]),
        processing_class=built.tokenizer,
        data_collator=SemanticIDCollator(built.tokenizer, seed=recipe.seed),
        objectives=build_objectives(recipe.training.objectives),
        deterministic=recipe.training.deterministic,
        fast_dropout=recipe.training.fast_dropout,
        callbacks=[clock],
    )
    trainer.train()
    return recipe.training.batch_size * steps / clock.seconds


def _rate_in_fresh_process(args, overrides: list[str]) -> float:
    """:func:`real_rate` in a new Python process: a variant's process-wide settings (the allocator policy of
    ``keep_freed_memory``, PyTorch's switches) and its heap never reach the next variant's timing."""
    command = [sys.executable, __file__, "--one-rate", args.real, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), *(f"--override={item}" for item in overrides)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"timing {overrides} failed:\n{finished.stderr[-3000:]}")
    return float(finished.stdout.strip().splitlines()[-1])


def real(args) -> dict:
    variants = VARIANTS
    if args.variant:
        variants = {}
        for text in args.variant:
            name, _, overrides = text.partition("=")
            variants[name] = [item for item in overrides.split(",") if item]
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name, overrides in variants.items():
            rate = _rate_in_fresh_process(args, overrides)
            rates[name].append(round(rate, 1))
            print(f"round {round_ + 1} {name}: {rate:.1f} examples/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    if set(variants) != {"today", "new"}:
        return {
            "recipe": args.real,
            "machine": _machine(),
            "variants": variants,
            "examples_per_s": rates,
            "median_examples_per_s": medians,
        }
    today, new = medians["today"], medians["new"]
    return {
        "recipe": args.real,
        "machine": _machine(),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "variants": variants,
        "examples_per_s": rates,
        "today_examples_per_s": today,
        "new_examples_per_s": new,
        "speedup": round(new / today, 2),
        "date": time.strftime("%Y-%m-%d"),
    }


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", default=None, help="a recipe: time its real training path (today vs new)")
    parser.add_argument("--rounds", type=int, default=2, help="with --real: alternations of the variants")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        help="with --real: NAME=override,override (repeatable) in place of today/new, to probe options",
    )
    parser.add_argument("--one-rate", default=None, help=argparse.SUPPRESS)  # one variant's rate, for real()
    parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiger")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--history", type=int, default=20, help="items per history (4 tokens each + 1)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    if args.one_rate:
        with tempfile.TemporaryDirectory() as workdir:
            print(real_rate(args.one_rate, args.override, args.warmup, args.steps, Path(workdir)))
        return
    result = real(args) if args.real else synthetic(args)
    print(json.dumps(result))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
