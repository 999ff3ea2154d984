"""sidrec installed like a library: a wheel built by pip, installed into a fresh environment, used from elsewhere.

CI and ``make`` install sidrec editable, which reads every file from the clone; a file left out of the package data
would fail only for users who ``pip install``. This builds the wheel with pip itself, offline and without build
isolation, from a copy of the sources (the clone's ``build/`` folder, which setuptools reuses, cannot leak stale
files into it), installs it with ``--no-deps`` into a new virtual environment that sees the dependencies of the
running one (torch and the rest come from there, nothing is downloaded), and from a folder without the sources
checks what a user gets: the ``evaluate`` module, the card templates, the shipped checkpoints (every file), loading
one through ``AutoModel`` and ``Recommender``, the ``sequential-recommendation`` pipeline (the installed class and
the code saved beside the checkpoint give the ``Recommender``'s items and scores), and the ``sidrec recommend``
command by a checkpoint's name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from .conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "sidrec", "modeling", "tokenization", "training")
SOURCES += ("model_cards", "metrics", "checkpoints")

USER_SCRIPT = """
import json
import sys
from pathlib import Path

import evaluate
import sidrec
from sidrec.checkpoints import checkpoint_path, list_checkpoints
from sidrec.metrics import SID_RANKING
from sidrec.recommender import Recommender
from transformers import AutoModel, AutoTokenizer, pipeline

package = Path(sidrec.__file__).parent
assert package.is_relative_to(sys.prefix), (package, sys.prefix)  # the wheel's copy, not the clone
templates = sorted(path.name for path in (package / "model_cards").glob("*.md"))
scores = evaluate.load(SID_RANKING).compute(predictions=[[1, 2, 3]], references=[2], ks=[1, 3], num_items=10)
# pip byte-compiles every .py it installs, the remote code beside the weights too: __pycache__ is pip's, not ours
shipped = {{
    checkpoint.name: sorted(path.name for path in checkpoint.path.iterdir() if path.name != "__pycache__")
    for checkpoint in list_checkpoints()
}}
path = checkpoint_path("scientific-tiger")
model = AutoModel.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
recommender = Recommender.from_pretrained(path)
history = {history!r}
expected = [[row.item_id, row.title, row.score] for row in recommender.recommend(history, top_k=5)]
installed_class = sidrec.SequentialRecommendationPipeline
installed = pipeline("sequential-recommendation", model=str(path), pipeline_class=installed_class)
saved_code = pipeline("sequential-recommendation", model=str(path))  # the task alone, as the README calls it
print(json.dumps({{
    "package": str(package),
    "metric_file": str(SID_RANKING),
    "templates": templates,
    "scores": scores,
    "shipped": shipped,
    "checkpoint": str(path),
    "model": type(model).__name__,
    "num_items": tokenizer.num_items,
    "expected": expected,
    "installed_pipeline": [[r["item_id"], r["title"], r["score"]] for r in installed(history, top_k=5)],
    "saved_pipeline": [[r["item_id"], r["title"], r["score"]] for r in saved_code(history, top_k=5)],
    "saved_pipeline_module": type(saved_code).__module__,
}}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the new environment's python, its ``bin`` folder, a folder without the sources) with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    sources = tmp / "sources"
    sources.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, sources / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, sources / name)
    offline = {**os.environ, "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1"}
    dist = tmp / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]  # pip itself, offline
    _run([*build, "-w", str(dist), str(sources)], env=offline)
    (wheel,) = dist.glob("sidrec-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # The running environment's packages (torch, transformers, ...) after the new one's own: a path line only, so
    # the clone's editable install (a .pth finder there) is not switched on.
    (Path(site) / "running_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], env=offline)
    elsewhere = tmp / "user"
    elsewhere.mkdir()
    return python, venv / "bin", elsewhere, offline


@pytest.mark.slow
def test_the_installed_wheel_carries_the_metric_templates_and_checkpoints_and_serves_them(installed):
    python, bin_dir, elsewhere, env = installed
    from sidrec.recommender import Recommender

    history = Recommender.from_pretrained(ROOT / "checkpoints" / "scientific-tiger").item_ids[10:13]
    script = textwrap.dedent(USER_SCRIPT.format(history=list(history)))
    found = json.loads(_run([str(python), "-c", script], cwd=elsewhere, env=env).stdout.strip().splitlines()[-1])

    assert found["package"].startswith(str(python.parents[1])) and found["metric_file"].startswith(found["package"])
    assert {"template.md", "adapter_template.md", "baseline_template.md"} <= set(found["templates"])
    assert found["scores"]["recall@1"] == 0.0 and found["scores"]["recall@3"] == 1.0
    clone = {path.name for path in (ROOT / "checkpoints").iterdir() if (path / "config.json").is_file()}
    assert set(found["shipped"]) == clone
    for name in clone:  # every file of every shipped model directory, the remote code included
        assert found["shipped"][name] == sorted(path.name for path in (ROOT / "checkpoints" / name).iterdir()), name
    assert found["checkpoint"].startswith(found["package"])
    assert found["model"] == "SIDT5ForConditionalGeneration" and found["num_items"] == 4344
    assert len(found["expected"]) == 5
    assert found["installed_pipeline"] == found["expected"] == found["saved_pipeline"]
    # the installed pipeline served the folder, though its config.json names the copy saved beside the weights
    assert found["saved_pipeline_module"] == "sidrec.modeling.pipeline_sequential_recommendation"


@pytest.mark.slow
def test_the_installed_sidrec_command_recommends_from_a_shipped_checkpoint_by_name(installed):
    python, bin_dir, elsewhere, env = installed
    from sidrec.recommender import Recommender

    recommender = Recommender.from_pretrained(ROOT / "checkpoints" / "scientific-tiger")
    history = recommender.item_ids[10:13]
    command = [str(bin_dir / "sidrec"), "recommend", "scientific-tiger", "--history", *history, "--top-k", "5"]
    lines = _run(command, cwd=elsewhere, env=env).stdout.splitlines()
    expected = recommender.recommend(history, top_k=5)
    assert [line.split()[1] for line in lines] == [row.item_id for row in expected]
    assert all(row.title[:40] in line for row, line in zip(expected, lines))
