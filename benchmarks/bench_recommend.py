"""Users per second: the fast `recommend` path vs stock `generate` with the trie processor.

Both rank the same users with the same model and beam width, in one run, so the ratio is
meaningful whatever the machine. The model is TIGER-size (4 + 4 layers, d_model 128, 6 heads of
64, d_ff 1024) over 4-level codes of 256; weights are random, which does not change the cost.

    python benchmarks/bench_recommend.py [--users 256] [--batch-size 32] [--num-beams 20] [--device cpu]
    python benchmarks/bench_recommend.py --precision bf16 --skip-generate   # bf16 against fp32, same users
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from bench_train import SIZES  # noqa: E402  (a sibling script: the same model shapes)

import sidrec  # noqa: F401
from sidrec import SemanticIDTokenizer, SIDT5Config, SIDT5ForConditionalGeneration
from sidrec.tokenization.semantic_codes import append_collision_level


def timed_batches(rank, histories: list[list[int]], batch_size: int) -> list[float]:
    """Seconds of each batch's call, after one warm-up call (its first-call costs are not serving)."""
    rank(histories[:batch_size])
    seconds = []
    for start in range(0, len(histories), batch_size):
        started = time.perf_counter()
        rank(histories[start : start + batch_size])
        seconds.append(time.perf_counter() - started)
    return seconds


def users_per_second(rank, histories: list[list[int]], batch_size: int) -> float:
    return len(histories) / sum(timed_batches(rank, histories, batch_size))


def top_k_overlap(first, second) -> float:
    """Mean share of one ranking's top-k items that the other ranking's top-k also holds."""
    shared = [len(set(a) & set(b)) / len(a) for a, b in zip(first.items.tolist(), second.items.tolist(), strict=True)]
    return sum(shared) / len(shared)


def serving_cell(
    size: str, history: int, users: int, items: int = 12101, device: str = "cpu"
) -> tuple[SIDT5ForConditionalGeneration, SemanticIDTokenizer, list[list[int]]]:
    """A random-weight model of ``size``, a tokenizer over 4-level codes of 256, and ``users`` histories.

    Seeded, so every script that times or profiles a cell sees the same model and users.
    """
    torch.manual_seed(0)
    codes = append_collision_level(torch.randint(0, 256, (items, 3)), 256)
    tokenizer = SemanticIDTokenizer(item_codes=codes, num_levels=4, codebook_size=256, max_history=history)
    config = SIDT5Config(num_code_levels=4, codebook_size=256, **SIZES[size])
    model = SIDT5ForConditionalGeneration(config).to(device).eval()
    histories = [torch.randint(0, items, (history,)).tolist() for _ in range(users)]
    return model, tokenizer, histories


def measure(
    size: str = "tiger",
    history: int = 20,
    batch_size: int = 32,
    users: int = 128,
    items: int = 12101,
    num_beams: int = 20,
    device: str = "cpu",
    precision: str = "fp32",
    skip_generate: bool = False,
) -> dict:
    """One serving cell: users/s of the fast path (and stock ``generate`` + trie) on the same users.

    The per-batch median latency is kept beside the throughput because at batch 1 it is what a
    single request waits. ``same_top_k`` checks both paths on the first 8 users.
    """
    model, tokenizer, histories = serving_cell(size, history, users, items, device)
    beams, k = num_beams, min(10, num_beams)

    def fast_path(kind: str):
        return lambda h: model.recommend(h, tokenizer, top_k=k, num_beams=beams, precision=kind)

    fast = timed_batches(fast_path("fp32"), histories, batch_size)
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "size": size,
        "history": history,
        "users": users,
        "batch_size": batch_size,
        "num_beams": beams,
        "recommend_users_per_s": round(users / sum(fast), 1),
        "recommend_p50_ms": round(1000 * statistics.median(fast), 2),
    }
    if precision == "bf16":  # the same users in bf16: speed against fp32 and how often the top-k agree
        half = users_per_second(fast_path("bf16"), histories, batch_size)
        result["recommend_bf16_users_per_s"] = round(half, 1)
        result["bf16_speedup_over_fp32"] = round(half / result["recommend_users_per_s"], 2)
        result["bf16_top_k_overlap"] = round(
            top_k_overlap(fast_path("fp32")(histories), fast_path("bf16")(histories)), 4
        )
    if not skip_generate:
        stock = timed_batches(
            lambda h: model.recommend_with_generate(h, tokenizer, top_k=k, num_beams=beams), histories, batch_size
        )
        result["generate_trie_users_per_s"] = round(users / sum(stock), 1)
        result["generate_trie_p50_ms"] = round(1000 * statistics.median(stock), 2)
        result["speedup"] = round(sum(stock) / sum(fast), 2)
        same = torch.equal(
            model.recommend(histories[:8], tokenizer, top_k=k, num_beams=beams).items,
            model.recommend_with_generate(histories[:8], tokenizer, top_k=k, num_beams=beams).items,
        )
        result["same_top_k"] = bool(same)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=128)
    parser.add_argument("--items", type=int, default=12101, help="catalogue size (Beauty: 12,101)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiger", help="TIGER-size or the CPU demo's model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: also time fp32 and report the agreement"
    )
    parser.add_argument("--output", default=None, help="write the result JSON here")
    args = parser.parse_args()
    result = measure(
        args.size,
        args.history,
        args.batch_size,
        args.users,
        args.items,
        args.num_beams,
        args.device,
        args.precision,
        args.skip_generate,
    )
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
