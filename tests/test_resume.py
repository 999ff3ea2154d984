"""Killed mid-run: a run killed with SIGKILL during an epoch and resumed ends exactly like one never stopped.

Each case trains the tiny recipe three times through ``train.py`` in a subprocess (as a user runs it):
straight through; killed as soon as the first epoch's checkpoint is complete; resumed from it with
``--resume_from_checkpoint``. The resumed run must give the same test metrics, weights and codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .conftest import ROOT
from .test_pipeline import TINY, recipe_file

JOINT = [
    "joint.enabled=true",
    "joint.uncertainty_decay=frqud",
    "training.objectives={ce: 1.0, quantizer: 1.0}",
]


def train_command(recipe: Path, output_dir: Path, extra: list[str]) -> list[str]:
    overrides = [*TINY, "training.epochs=3", f"output_dir={output_dir}", *extra]
    return [sys.executable, str(ROOT / "train.py"), "--config", str(recipe), *overrides]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def kill_after_first_checkpoint(command: list[str], output_dir: Path, timeout: float = 600) -> None:
    process = subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if list((output_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            process.send_signal(signal.SIGKILL)  # during epoch 2: no handler runs, nothing is flushed
            process.wait()
            return
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no checkpoint appeared before the run ended: {process.stderr.read().decode()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("method, extra", [("tiger", []), ("diger", JOINT)], ids=["tiger", "diger"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path, method, extra):
    recipe = recipe_file(tmp_path)
    straight, halted = tmp_path / "straight", tmp_path / "halted"
    subprocess.run(train_command(recipe, straight, extra), cwd=ROOT, env=environment(), check=True, capture_output=True)
    kill_after_first_checkpoint(train_command(recipe, halted, extra), halted)
    assert not (halted / "metrics.json").exists() and not (halted / "model").exists()  # it really died mid-run

    resumed = subprocess.run(
        [*train_command(recipe, halted, extra), "--resume_from_checkpoint"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, found = (json.loads((d / "metrics.json").read_text()) for d in (straight, halted))
    tests = [key for key in expected if key.startswith("test/") and "seconds" not in key and "per_second" not in key]
    assert tests and {key: found[key] for key in tests} == {key: expected[key] for key in tests}
    assert found["train/epochs"] == expected["train/epochs"]
    weights = [load_file(d / "model" / "model.safetensors") for d in (straight, halted)]
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=0, msg=name)
    codes = [load_file(d / "model" / "item_codes.safetensors") for d in (straight, halted)]
    assert codes[0].keys() == codes[1].keys() and all(torch.equal(codes[0][k], codes[1][k]) for k in codes[0])


def test_resume_without_a_checkpoint_names_the_fix(tmp_path):
    recipe = recipe_file(tmp_path)
    result = subprocess.run(
        [*train_command(recipe, tmp_path / "nothing", []), "--resume_from_checkpoint"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no checkpoint to resume from" in result.stderr
    assert "Traceback" not in result.stderr
