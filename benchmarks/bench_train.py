"""Training throughput: examples per second of SID-T5 training steps, fp32 or bf16 autocast.

Forward, cross-entropy, backward and AdamW on synthetic batches of the given shape (the cost of a
step does not depend on the token values), after warm-up steps; CUDA is synchronised around the
timed loop. The GPU suite runs it at batch 256 and 1024 in both precisions.

    python benchmarks/bench_train.py [--size tiger|demo] [--batch-size 256] [--history 20] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import sidrec  # noqa: F401
from sidrec import SIDT5Config, SIDT5ForConditionalGeneration

SIZES = {
    "tiger": dict(d_model=128, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=6),
    "demo": dict(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiger")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--history", type=int, default=20, help="items per history (4 tokens each + 1)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

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
    result = {
        "device": torch.cuda.get_device_name() if device_type == "cuda" else "cpu",
        "size": args.size,
        "batch_size": args.batch_size,
        "history": args.history,
        "precision": args.precision,
        "steps": args.steps,
        "examples_per_s": round(args.batch_size * args.steps / seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps(result))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
