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
import time

import torch
from bench_train import SIZES  # noqa: E402  (a sibling script: the same model shapes)

import sidrec  # noqa: F401
from sidrec import SemanticIDTokenizer, SIDT5Config, SIDT5ForConditionalGeneration
from sidrec.tokenization.semantic_codes import append_collision_level


def users_per_second(rank, histories: list[list[int]], batch_size: int) -> float:
    rank(histories[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(histories), batch_size):
        rank(histories[start : start + batch_size])
    return len(histories) / (time.perf_counter() - started)


def top_k_overlap(first, second) -> float:
    """Mean share of one ranking's top-k items that the other ranking's top-k also holds."""
    shared = [len(set(a) & set(b)) / len(a) for a, b in zip(first.items.tolist(), second.items.tolist(), strict=True)]
    return sum(shared) / len(shared)


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

    torch.manual_seed(0)
    codes = append_collision_level(torch.randint(0, 256, (args.items, 3)), 256)
    tokenizer = SemanticIDTokenizer(item_codes=codes, num_levels=4, codebook_size=256, max_history=args.history)
    config = SIDT5Config(num_code_levels=4, codebook_size=256, **SIZES[args.size])
    model = SIDT5ForConditionalGeneration(config).to(args.device).eval()
    histories = [torch.randint(0, args.items, (args.history,)).tolist() for _ in range(args.users)]
    beams, k = args.num_beams, min(10, args.num_beams)

    def fast_path(precision: str):
        return lambda h: model.recommend(h, tokenizer, top_k=k, num_beams=beams, precision=precision)

    fast = users_per_second(fast_path("fp32"), histories, args.batch_size)
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "size": args.size,
        "history": args.history,
        "users": args.users,
        "batch_size": args.batch_size,
        "num_beams": beams,
        "recommend_users_per_s": round(fast, 1),
    }
    if args.precision == "bf16":  # the same users in bf16: speed against fp32 and how often the top-k agree
        half = users_per_second(fast_path("bf16"), histories, args.batch_size)
        result["recommend_bf16_users_per_s"] = round(half, 1)
        result["bf16_speedup_over_fp32"] = round(half / fast, 2)
        result["bf16_top_k_overlap"] = round(
            top_k_overlap(fast_path("fp32")(histories), fast_path("bf16")(histories)), 4
        )
    if not args.skip_generate:
        stock = users_per_second(
            lambda h: model.recommend_with_generate(h, tokenizer, top_k=k, num_beams=beams), histories, args.batch_size
        )
        result["generate_trie_users_per_s"] = round(stock, 1)
        result["speedup"] = round(fast / stock, 2)
        same = torch.equal(
            model.recommend(histories[:8], tokenizer, top_k=k, num_beams=beams).items,
            model.recommend_with_generate(histories[:8], tokenizer, top_k=k, num_beams=beams).items,
        )
        result["same_top_k"] = bool(same)
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
