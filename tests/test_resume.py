"""Killed mid-run: a run killed with SIGKILL during an epoch and resumed ends exactly like one never stopped.

Each case trains the tiny recipe three times through ``train.py`` in a subprocess (as a user runs it):
straight through; killed as soon as the first epoch's checkpoint is complete; resumed from it with
``--resume_from_checkpoint``. The resumed run must give the same test metrics, weights and codes, and
report the training seconds of both attempts.
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
from safetensors.torch import load_file, save_file

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
        if list((output_dir / "checkpoints").glob("checkpoint-*/train_seconds.json")):  # a checkpoint's last file
            process.send_signal(signal.SIGKILL)  # during epoch 2: no handler runs, nothing is flushed
            process.wait()
            return
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no checkpoint appeared before the run ended: {process.stderr.read().decode()[-2000:]}")


FAST_STEP = ["training.precision=bf16", "model.attn_implementation=eager", "training.fast_dropout=true"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, extra",
    [("tiger", []), ("diger", JOINT), ("tiger", FAST_STEP)],
    ids=["tiger", "diger", "tiger-bf16-fast-dropout"],
)
def test_a_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path, method, extra):
    recipe = recipe_file(tmp_path)
    straight, halted = tmp_path / "straight", tmp_path / "halted"
    subprocess.run(train_command(recipe, straight, extra), cwd=ROOT, env=environment(), check=True, capture_output=True)
    kill_after_first_checkpoint(train_command(recipe, halted, extra), halted)
    assert not (halted / "metrics.json").exists() and not (halted / "model").exists()  # it really died mid-run
    (checkpoint,) = (halted / "checkpoints").glob("checkpoint-*")
    seconds_before = json.loads((checkpoint / "train_seconds.json").read_text())["train_seconds"]
    assert (checkpoint / "item_codes.safetensors").exists()  # what a static-code resume is checked against

    resumed = subprocess.run(
        [*train_command(recipe, halted, extra), "--resume_from_checkpoint"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # static codes come back from the checkpoint instead of a second fit; DIGER restores its living table
    assert (f"Codes of {checkpoint}" in resumed.stdout) == (method == "tiger")
    expected, found = (json.loads((d / "metrics.json").read_text()) for d in (straight, halted))
    tests = [key for key in expected if key.startswith("test/") and "seconds" not in key and "per_second" not in key]
    assert tests and {key: found[key] for key in tests} == {key: expected[key] for key in tests}
    assert found["train/epochs"] == expected["train/epochs"]
    assert expected["train/resumed_from_step"] == 0 and found["train/resumed_from_step"] == int(checkpoint.name[11:])
    assert 0 < seconds_before < found["train/seconds"]  # the first attempt's seconds are counted
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


def test_resume_over_other_semantic_ids_names_the_fix(tmp_path):
    """A checkpoint without its tokenizer makes a static-code run fit its codes again before resuming; if they
    differ the weights would read the wrong items."""
    recipe, output_dir = recipe_file(tmp_path), tmp_path / "halted"
    checkpoint = output_dir / "checkpoints" / "checkpoint-7"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    save_file({"codes": torch.zeros(3, 4, dtype=torch.long)}, str(checkpoint / "item_codes.safetensors"))
    result = subprocess.run(
        [*train_command(recipe, output_dir, []), "--resume_from_checkpoint"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "semantic IDs fitted for this run differ" in result.stderr
    assert "start it again without --resume_from_checkpoint" in result.stderr and "Traceback" not in result.stderr
