"""The GPU suite's dry run: every step of benchmarks/gpu_suite.sh on CPU at tiny sizes, so the script is
known to work before a GPU window opens."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_every_result(tmp_path):
    out = tmp_path / "suite"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), str(out), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1200,
    )
    assert done.returncode == 0, (done.stdout[-2000:], (out / "suite.log").read_text() if out.exists() else "")
    summary = json.loads((out / "summary.json").read_text())
    serve = summary["serve-demo-h5-b2"]
    assert serve["same_top_k"] is True and serve["recommend_users_per_s"] > 0
    assert serve["recommend_p50_ms"] > 0 and serve["generate_trie_p50_ms"] > 0
    assert {summary[f"train-tiger-b8-{p}"]["precision"] for p in ("fp32", "bf16")} == {"fp32", "bf16"}
    (row,) = [json.loads(line) for line in (out / "results" / "scientific.jsonl").read_text().splitlines()]
    assert row["id"] == "scientific-mult-vae-base/demo/seed42" and row["epochs"] == 2
    assert "data.max_users=1500" in row["extra_overrides"] and 0 <= row["metrics"]["test/recall@10"] <= 1
    assert "1 new results row(s)" in (out / "suite.log").read_text()
    assert "done, 0 step(s) failed" in (out / "suite.log").read_text()
