"""Record, then check, that the demo recipes give the same metrics to the last digit.

A refactor must not move a number. ``--record FILE`` runs each recipe with ``train.py`` and stores
every metric of its ``metrics.json`` (times and throughputs left out: they vary run to run);
``--check FILE`` runs them again and lists every key whose value changed.

    python benchmarks/same_metrics.py --record benchmarks/results/same_metrics.json
    python benchmarks/same_metrics.py --check benchmarks/results/same_metrics.json [--only tiger]

Each recipe takes minutes on 2 cores (about 40 minutes for all of them); this is not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (recipe, overrides); the window LoRA run starts from the window base run's model.
RUNS: dict[str, tuple[str, list[str]]] = {
    "tiger": ("configs/scientific-tiger-demo.yaml", []),
    "diger-frqud": ("configs/scientific-diger-frqud-demo.yaml", []),
    "diger-sdud": ("configs/scientific-diger-sdud-demo.yaml", []),
    "tiger+soda": ("configs/scientific-tiger-soda-demo.yaml", []),
    "diger-frqud+soda": ("configs/scientific-diger-frqud-soda-demo.yaml", []),
    "dmrec-t5": ("configs/scientific-dmrec-t5-demo.yaml", []),
    "mult-vae-mddm": ("configs/scientific-mult-vae-mddm.yaml", []),
    "window-base": ("configs/scientific-window-base-demo.yaml", []),
    "window-lora": (
        "configs/scientific-window-lora-demo.yaml",
        ["finetune.from_model=runs/same-metrics/window-base/model"],
    ),
}
VARYING = ("runtime", "seconds", "per_second", "_bytes", "flos")
# --short: one epoch (Mult-VAE: six, two evaluations) and the first 1,000 test users, for a check that
# fits beside other work; the comparison is as exact as with the full recipes.
SHORT = {
    "sequential": ["training.epochs=1", "evaluation.max_test_users=1000"],
    "mult-vae-mddm": ["training.epochs=6"],
}


def stable_metrics(metrics: dict) -> dict:
    """The metrics a refactor must keep: every number except times, throughputs and file sizes."""
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not any(part in key for part in VARYING)
    }


def run_recipe(name: str, short: bool = False) -> dict:
    recipe, overrides = RUNS[name]
    if short:
        overrides = overrides + SHORT.get(name, SHORT["sequential"])
    output_dir = f"runs/same-metrics/{name}"
    command = [sys.executable, "train.py", "--config", recipe, f"output_dir={output_dir}", *overrides]
    subprocess.run([*command, "--overwrite_output_dir"], cwd=ROOT, check=True)
    return stable_metrics(json.loads((ROOT / output_dir / "metrics.json").read_text()))


def differences(recorded: dict, measured: dict) -> list[str]:
    """Every key missing on one side or whose value is not exactly equal (NaN equals NaN)."""
    lines = []
    for key in sorted(set(recorded) | set(measured)):
        old, new = recorded.get(key), measured.get(key)
        same = old == new or (isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new))
        if not same:
            lines.append(f"{key}: recorded {old!r}, now {new!r}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path)
    mode.add_argument("--check", type=Path)
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="a subset of the runs")
    parser.add_argument("--short", action="store_true", help="shortened budgets (stored under NAME@short)")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    path = args.record or args.check
    stored = json.loads(path.read_text()) if path.exists() else {}
    failed = False
    for name in names:
        measured = run_recipe(name, args.short)
        key = f"{name}@short" if args.short else name
        if args.record:
            stored[key] = {"recipe": RUNS[name][0], "short": args.short, "metrics": measured}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")  # each run as it lands
            print(f"[same_metrics] recorded {key}: {len(measured)} metrics")
            continue
        diff = differences(stored[key]["metrics"], measured)
        failed |= bool(diff)
        print(f"[same_metrics] {key}: " + ("identical" if not diff else "CHANGED\n  " + "\n  ".join(diff)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
