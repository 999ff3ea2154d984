"""End to end on a real slice: recipe -> data -> codes -> Trainer -> metrics.json -> saved model -> CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import CACHE, ROOT, SCIENTIFIC

TINY_DATA = [  # a real slice of Scientific and short-text MiniLM embeddings (cached across tests)
    f"data.path={SCIENTIFIC}",
    "data.max_users=1500",
    "data.min_item_interactions=3",
    "data.min_user_interactions=3",
    "data.text_fields=[title]",
    "embeddings.max_seq_length=32",
    f"embeddings.cache_dir={CACHE}",
]
TINY = [
    "name=tiny",
    *TINY_DATA,
    "quantizer.hidden_dims=[64]",
    "quantizer.latent_dim=16",
    "quantizer.codebook_size=32",
    "quantizer.epochs=60",
    "model.d_model=32",
    "model.d_kv=16",
    "model.num_heads=2",
    "model.d_ff=64",
    "model.num_layers=1",
    "model.num_decoder_layers=1",
    "training.epochs=2",
    "training.batch_size=64",
    "training.learning_rate=0.005",
    "training.logging_steps=5",
    "evaluation.num_beams=20",
    "evaluation.max_validation_users=150",
    "evaluation.max_test_users=200",
]


def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\ndata: {path: unused}\n")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    out = tmp_path_factory.mktemp("run")
    recipe = load_recipe(recipe_file(out), TINY + [f"output_dir={out}"])
    metrics = run(recipe)
    return out, metrics


def test_run_writes_metrics_with_flat_keys(tiny_run):
    out, metrics = tiny_run
    written = json.loads((out / "metrics.json").read_text())
    assert written == pytest.approx(metrics, nan_ok=True)
    for key in (
        "test/recall@10",
        "test/ndcg@10",
        "test/recall@5",
        "test/ndcg@20",
        "test/popularity/recall@10",
        "data/users",
        "codes/collision_rate",
        "train/loss",
    ):
        assert key in written
    assert 0 <= written["test/ndcg@10"] <= written["test/recall@10"] <= written["test/recall@20"] <= 1
    assert written["test/users"] == 200
    assert all(key.count("/") >= 1 and not key.endswith("/") for key in written)
    assert (out / "recipe.yaml").exists()
    saved = json.loads((out / "test_ranks.json").read_text())  # per-user ranks give the same Recall@10
    assert len(saved["ranks"]) == len(saved["users"]) == 200
    assert sum(0 <= rank < 10 for rank in saved["ranks"]) / 200 == pytest.approx(written["test/recall@10"])
    card = (out / "model" / "README.md").read_text()  # every run writes its model card and plot
    assert f"{written['test/recall@10']:.4f}" in card and (out / "model" / "training.png").exists()


def test_saved_run_loads_and_recommends_by_raw_id(tiny_run):
    from transformers import AutoModel, AutoTokenizer

    from sidrec import load_recommender

    out, _ = tiny_run
    model_dir = out / "model"
    assert isinstance(AutoModel.from_pretrained(model_dir).config.num_code_levels, int)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    recommender = load_recommender(model_dir)
    rows = recommender.recommend([recommender.item_ids[0], recommender.item_ids[5]], top_k=10)
    assert len(rows) == 10 and len({r.item_id for r in rows}) == 10
    assert all(r.item_id in recommender.index_of for r in rows)
    assert torch.equal(tokenizer.item_codes, recommender.tokenizer.item_codes)
    with pytest.raises(ValueError, match="unknown item id"):
        recommender.recommend(["not-an-item"])


def test_cli_recommend_prints_titles(tiny_run):
    out, _ = tiny_run
    done = subprocess.run(
        [sys.executable, "-m", "sidrec.cli", "recommend", str(out / "model"), "--history", "0", "1", "--top-k", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.")
    bad = subprocess.run(
        [sys.executable, "-m", "sidrec.cli", "recommend", str(out / "model"), "--history", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown item id" in bad.stderr


def test_finished_run_is_not_overwritten_silently(tiny_run):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import RecipeError, load_recipe

    out, _ = tiny_run
    before = (out / "metrics.json").read_text()
    with pytest.raises(RecipeError, match="already holds a run"):
        run(load_recipe(recipe_file(out), TINY + [f"output_dir={out}"]))
    assert (out / "metrics.json").read_text() == before


DIGER_SODA = [
    "joint.enabled=true",
    "joint.decay_options={scale: 0.1}",
    "training.objectives={ce: 1.0, quantizer: 1.0, soda: {weight: 0.1, negatives: both}}",
    "training.num_negatives=4",
]


def collaborative_overrides(tmp_path: Path) -> list[str]:
    """Make a recipe read a 1-epoch SASRec's item table, trained on first use into a cache under ``tmp_path``."""
    sasrec_file = tmp_path / "sasrec.yaml"
    sasrec_file.write_text(
        "name: tiny-sasrec\nseed: 7\ndata: {path: unused}\nsasrec: {enabled: true, hidden_size: 16}\n"
        "training: {epochs: 1, batch_size: 256}\nevaluation: {max_validation_users: 200}\n"
    )
    return [
        "embeddings.source=collaborative",
        f"embeddings.collaborative_recipe={sasrec_file}",
        f"embeddings.cache_dir={tmp_path / 'cache' / 'e'}",
    ]


@pytest.mark.parametrize("extra", [[], DIGER_SODA, "collaborative"], ids=["tiger", "diger-soda", "collaborative"])
def test_accelerate_launch_two_cpu_processes(tmp_path, extra):
    """DDP on CPU (gloo) through `accelerate launch --num_processes 2` completes a few steps.

    ``collaborative``: both processes first train the SASRec cache together (a multi-process launch takes
    no cache lock, which would leave one process waiting on the other's).
    """
    collaborative = extra == "collaborative"
    if collaborative:
        extra = collaborative_overrides(tmp_path)
    out = tmp_path / "ddp"
    overrides = [o for o in TINY if not o.startswith(("training.epochs", "evaluation.max_test_users"))]
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--multi_gpu",  # torchrun; gloo on CPU
        str(ROOT / "train.py"),
        "--config",
        str(recipe_file(tmp_path)),
        *overrides,
        *extra,
        f"output_dir={out}",
        "training.max_steps=4",
        "training.eval_steps=2",
        "evaluation.max_test_users=40",
        "evaluation.max_validation_users=40",
        "training.torch_threads=1",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train/steps"] == 4
    assert metrics["train/processes"] == 2
    assert metrics["test/users"] == 40
    assert (out / "model" / "model.safetensors").exists()
    cached = list((tmp_path / "cache" / "collaborative").glob("sasrec-*/metrics.json"))
    assert len(cached) == int(collaborative)
    for sasrec_metrics in cached:  # the SASRec was trained by the launch's two processes together
        assert json.loads(sasrec_metrics.read_text())["train/processes"] == 2


def test_saved_model_reproduces_the_reported_test_metrics(tiny_run):
    """The directory on disk is the model that was evaluated (best checkpoint reloaded, tied weights intact)."""
    from transformers import AutoModel, AutoTokenizer

    from sidrec.training.data import load_sequential_data
    from sidrec.training.ranking import evaluate_split
    from sidrec.training.recipe import load_recipe

    out, metrics = tiny_run
    recipe = load_recipe(out / "recipe.yaml")
    data = load_sequential_data(recipe.data, verbose=False)
    model = AutoModel.from_pretrained(out / "model")
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    again = evaluate_split(
        model,
        AutoTokenizer.from_pretrained(out / "model"),
        data.splits["test"],
        num_beams=20,
        max_users=recipe.evaluation.max_test_users,
        progress=False,
    )
    for key, value in again.items():
        assert value == pytest.approx(metrics[f"test/{key}"], abs=1e-9), key


JOINT = [
    "joint.enabled=true",
    "joint.uncertainty_decay=frqud",
    "joint.decay_options={scale: 0.1}",
    "joint.tokenizer_learning_rate=1e-4",
    "training.objectives={ce: 1.0, quantizer: {weight: 1.0, balance: 0.1}}",
]


@pytest.mark.slow
def test_joint_recipe_runs_end_to_end_and_saves_a_plain_recommender(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from sidrec import SIDT5ForConditionalGeneration
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    recipe = load_recipe(recipe_file(tmp_path), TINY + JOINT + [f"output_dir={tmp_path}", "training.epochs=1"])
    metrics = run(recipe)
    assert {"codes/final/collision_rate", "codes/final/level0/usage", "test/recall@10"} <= set(metrics)
    assert (tmp_path / "training.png").stat().st_size > 10_000
    model = AutoModel.from_pretrained(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert type(model) is SIDT5ForConditionalGeneration and tokenizer.quantizer is not None
    state = json.loads(next((tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    code_rows = [row for row in state["log_history"] if "codes/collision_rate" in row]
    assert [row["epoch"] for row in code_rows] == [0.0, 1.0]  # start, then after the epoch
    assert code_rows[-1]["codes/collision_rate"] == pytest.approx(metrics["codes/final/collision_rate"])


def test_joint_recipe_without_the_quantizer_objective_is_an_error(tmp_path):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import RecipeError, load_recipe

    recipe = load_recipe(recipe_file(tmp_path), TINY + ["joint.enabled=true", f"output_dir={tmp_path}"])
    with pytest.raises(RecipeError, match="add `quantizer: 1.0` to training.objectives"):
        run(recipe)


JOINT_ON = ["joint.enabled=true", "training.objectives={ce: 1.0, quantizer: 1.0}"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.objectives={ce: 1.0, quantizer: 1.0}"], "set `joint.enabled: true`"),
        (JOINT_ON + ["joint.uncertainty_decay=loud"], "unknown uncertainty decay 'loud'"),
        (JOINT_ON + ["joint.decay_options={shape: 1}"], "joint.uncertainty_decay='frqud' with {'shape': 1}"),
        (["training.objectives={ce: 1.0, soda: 1.0}"], "objective `soda` compares"),
        (
            JOINT_ON[:1] + ["training.objectives={ce: 1.0, quantizer: 1.0, soda: {negatives: sampled}}"],
            "set training.num_negatives >= 1",
        ),
    ],
)
def test_conflicting_joint_settings_fail_before_any_work(tmp_path, overrides, message):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import RecipeError, load_recipe

    recipe = load_recipe(recipe_file(tmp_path), TINY + overrides + [f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(RecipeError, match=re.escape(message)):
        run(recipe)
    assert not (tmp_path / "out").exists()


def test_kept_shards_give_tiger_the_codes_of_the_joined_table(tmp_path):
    """``embeddings.keep_shards``: the RQ-VAE reads the shard files on disk and assigns the same codes."""
    from sidrec.training.data import load_sequential_data
    from sidrec.training.embeddings import EmbeddingShards
    from sidrec.training.recipe import load_recipe
    from sidrec.training.stages.codes import build_codes, embed_catalogue

    joined_recipe = load_recipe(recipe_file(tmp_path), TINY + ["quantizer.epochs=5"])
    data = load_sequential_data(joined_recipe.data, verbose=False)
    joined = embed_catalogue(joined_recipe, data)  # the shared cache: one tensor
    sharded = [f"embeddings.cache_dir={tmp_path / 'cache'}", "embeddings.shard_size=500", "embeddings.keep_shards=true"]
    kept_recipe = load_recipe(recipe_file(tmp_path), TINY + ["quantizer.epochs=5", *sharded])
    kept = embed_catalogue(kept_recipe, data)
    assert isinstance(kept, EmbeddingShards) and len(list((tmp_path / "cache").glob("*.shards/*"))) > 1
    torch.testing.assert_close(kept[:], joined, atol=1e-5, rtol=1e-4)  # shard-sized batches, same values
    kept_codes = build_codes(kept_recipe, kept).codes
    assert torch.equal(kept_codes, build_codes(kept_recipe, kept[:]).codes)  # the table on disk = in memory


@pytest.mark.slow
def test_train_with_push_to_hub_uploads_a_loadable_run(tmp_path, hub_server):
    from huggingface_hub import HfApi, snapshot_download

    from sidrec import load_recommender
    from sidrec.cli import main

    repo_id = f"{hub_server.user}/tiny-trained"
    argv = ["train", "--config", str(recipe_file(tmp_path)), "--push_to_hub", "--hub_model_id", repo_id]
    assert main(argv + TINY + [f"output_dir={tmp_path}", "training.epochs=1"]) == 0
    files = set(HfApi().list_repo_files(repo_id))
    assert {"model.safetensors", "item_codes.safetensors", "quantizer.safetensors", "generation_config.json"} <= files
    local = load_recommender(str(tmp_path / "model"))
    pulled = load_recommender(snapshot_download(repo_id, cache_dir=tmp_path / "cache"))
    history = [local.item_ids[i] for i in (3, 17, 42)]
    assert [r.item_id for r in pulled.recommend(history)] == [r.item_id for r in local.recommend(history)]


def test_push_to_hub_without_a_repository_fails_before_training(tmp_path, capsys):
    from sidrec.cli import main

    argv = ["train", "--config", str(recipe_file(tmp_path)), "--push_to_hub", f"output_dir={tmp_path / 'out'}"]
    assert main(argv) == 2
    assert "--push_to_hub needs --hub_model_id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
