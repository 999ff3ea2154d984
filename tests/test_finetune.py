"""Fine-tuning a saved run on a newer window of the same data, with a PEFT adapter or fully.

The protocol: a base run trained with ``data.drop_last: N`` (each user's last N interactions left
out), then a fine-tuning run on the full data with ``finetune.train_last: N`` (only the training
examples that are new since the base). Everything runs on a real Scientific slice.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModel, AutoTokenizer

from sidrec.model_cards.card import render_model_card
from sidrec.training.data import DataConfig, DataFormatError, load_sequential_data
from sidrec.training.finetune import last_examples_per_user, peft_config
from sidrec.training.ranking import evaluate_split
from sidrec.training.recipe import RecipeError, load_recipe

from .conftest import SCIENTIFIC
from .test_pipeline import TINY, recipe_file

WINDOW = ["data.min_user_interactions=4"]  # the tiny slice is 3-core; dropping one needs 4 per user
LORA = "finetune.peft={peft_type: LORA, r: 4, lora_alpha: 8, lora_dropout: 0.0}"


def rows(split) -> Counter:
    return Counter(zip(split["user"], map(tuple, split["history"]), split["target"]))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- data: the earlier snapshot and the new window -------------------------------------------------
@pytest.fixture(scope="module")
def snapshot():
    """Scientific as it stood two interactions per user earlier."""
    return load_sequential_data(DataConfig(path=str(SCIENTIFIC), max_history=20, drop_last=2), verbose=False)


def test_drop_last_is_the_same_catalogue_two_interactions_earlier(scientific, snapshot):
    assert snapshot.user_ids == scientific.user_ids and snapshot.item_ids == scientific.item_ids
    assert snapshot.sequences == [sequence[:-2] for sequence in scientific.sequences]
    assert snapshot.num_interactions == scientific.num_interactions - 2 * scientific.num_users
    user = 7  # the snapshot's test target is the full data's third-to-last item
    full = scientific.sequences[user]
    assert snapshot.splits["test"][user]["target"] == full[-3]
    assert snapshot.splits["test"][user]["history"] == full[:-3][-20:]


def test_new_window_and_snapshot_partition_the_training_examples(scientific, snapshot):
    window = last_examples_per_user(scientific.splits["train"], 2)
    assert len(window) == 2 * scientific.num_users  # every 5-core user has at least two training targets
    assert rows(window) + rows(snapshot.splits["train"]) == rows(scientific.splits["train"])
    assert not rows(window) & rows(snapshot.splits["train"])
    # the new examples are the ones whose targets were the snapshot's validation and test items
    assert rows(window) == rows(snapshot.splits["validation"]) + rows(snapshot.splits["test"])


def test_last_examples_per_user_by_hand():
    split = Dataset.from_dict({"user": [0, 0, 0, 1, 2, 2], "history": [[1]] * 6, "target": [10, 11, 12, 13, 14, 15]})
    assert last_examples_per_user(split, 2)["target"] == [11, 12, 13, 14, 15]
    assert last_examples_per_user(split, 1)["target"] == [12, 13, 15]
    with pytest.raises(RecipeError, match="train_last must be a positive integer"):
        last_examples_per_user(split, 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"drop_last": 3},
            "users with fewer than 3 interactions; set data.min_user_interactions to at least 6",
        ),
        ({"drop_last": -1}, "data.drop_last must be an integer >= 0"),
        ({"drop_last": "2"}, "data.drop_last must be an integer >= 0"),
    ],
)
def test_bad_drop_last_names_the_fix(overrides, message):
    with pytest.raises(DataFormatError, match=message):
        load_sequential_data(DataConfig(path=str(SCIENTIFIC), **overrides), verbose=False)


# ----- peft configs from recipes ---------------------------------------------------------------------
def test_peft_config_takes_t5_defaults_and_keeps_explicit_modules():
    lora = peft_config({"peft_type": "lora", "r": 4})
    assert lora.peft_type.value == "LORA" and lora.task_type == "SEQ_2_SEQ_LM" and lora.r == 4
    assert set(lora.target_modules) == {"q", "v"}  # peft's choice for T5
    ia3 = peft_config({"peft_type": "IA3"})
    assert set(ia3.target_modules) == {"k", "v", "wo"} and set(ia3.feedforward_modules) == {"wo"}
    explicit = peft_config({"peft_type": "LORA", "target_modules": ["q", "k", "v", "o", "wi", "wo"]})
    assert set(explicit.target_modules) == {"q", "k", "v", "o", "wi", "wo"}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"r": 4}, "needs peft_type"),
        ({"peft_type": "LORAX"}, "'LORAX' is not a peft method; use one of .*LORA"),
        ({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}, "prompt-learning method"),
        ({"peft_type": "LORA", "rank": 4}, "finetune.peft .*rank"),
    ],
)
def test_bad_peft_options_are_recipe_errors(options, message):
    with pytest.raises(RecipeError, match=message):
        peft_config(options)


# ----- end to end: base run, then LoRA and full fine-tuning ------------------------------------------
@pytest.fixture(scope="module")
def window_runs(tmp_path_factory):
    """A tiny base run on the earlier snapshot, then LoRA and full fine-tuning on the new window."""
    from sidrec.training.pipeline import run

    out = tmp_path_factory.mktemp("window")
    recipe = recipe_file(out)
    run(load_recipe(recipe, [*TINY, *WINDOW, "data.drop_last=1", f"output_dir={out}/base"]))
    base_digest = file_digest(out / "base" / "model" / "model.safetensors")
    finetune = [*TINY, *WINDOW, f"finetune.from_model={out}/base/model", "finetune.train_last=1"]
    lora = run(load_recipe(recipe, [*finetune, LORA, "training.learning_rate=0.02", f"output_dir={out}/lora"]))
    full = run(load_recipe(recipe, [*finetune, "training.learning_rate=0.002", f"output_dir={out}/full"]))
    return out, base_digest, lora, full


@pytest.fixture(scope="module")
def tiny_test(tmp_path_factory):
    """The tiny slice's test split, as far as the runs evaluate it (evaluation.max_test_users in TINY)."""
    recipe = load_recipe(recipe_file(tmp_path_factory.mktemp("recipe")), [*TINY, *WINDOW])
    return load_sequential_data(recipe.data, verbose=False).splits["test"].select(range(200))


@pytest.mark.slow
def test_lora_run_saves_a_small_adapter_and_leaves_the_base_untouched(window_runs):
    out, base_digest, lora, _ = window_runs
    assert file_digest(out / "base" / "model" / "model.safetensors") == base_digest
    adapter = out / "lora" / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    assert lora["finetune/adapter_bytes"] == (adapter / "adapter_model.safetensors").stat().st_size
    assert lora["finetune/adapter_bytes"] < 0.15 * lora["finetune/model_bytes"]
    assert 0 < lora["finetune/trainable_parameters"] < 0.1 * lora["finetune/total_parameters"]
    # the run's model/ is the merged model, a plain recommender of the base's architecture
    saved = yaml.safe_load((out / "lora" / "recipe.yaml").read_text())
    assert saved["model"]["d_model"] == 32 and saved["finetune"]["train_last"] == 1
    assert AutoModel.from_pretrained(out / "lora" / "model").config.d_model == 32


@pytest.mark.slow
def test_reported_base_and_fine_tuned_metrics_are_reproduced(window_runs, tiny_test):
    out, _, lora, _ = window_runs
    for model_dir, prefix in ((out / "base" / "model", "test/base/"), (out / "lora" / "model", "test/")):
        model = AutoModel.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        again = evaluate_split(model, tokenizer, tiny_test, (5, 10, 20), num_beams=20, progress=False)
        for key, value in again.items():
            assert lora[prefix + key] == pytest.approx(value, abs=1e-12), (prefix, key)
    assert any(lora[f"test/{k}"] != lora[f"test/base/{k}"] for k in ("recall@20", "ndcg@20", "mrr@20"))


@pytest.mark.slow
def test_adapter_on_the_base_recommends_as_the_merged_model(window_runs, tiny_test):
    out, *_ = window_runs
    tokenizer = AutoTokenizer.from_pretrained(out / "base" / "model")
    histories = tiny_test["history"][:40]
    adapted = PeftModel.from_pretrained(AutoModel.from_pretrained(out / "base" / "model"), out / "lora" / "adapter")
    merged = AutoModel.from_pretrained(out / "lora" / "model")
    base = AutoModel.from_pretrained(out / "base" / "model")
    with torch.no_grad():
        got = adapted.eval().recommend(histories, tokenizer, top_k=10)
        expected = merged.eval().recommend(histories, tokenizer, top_k=10)
        before = base.eval().recommend(histories, tokenizer, top_k=10)
    assert torch.equal(got.items, expected.items)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got.scores, before.scores)  # the adapter is not the identity


@pytest.mark.slow
def test_full_fine_tuning_trains_every_weight_and_saves_no_adapter(window_runs):
    out, _, lora, full = window_runs
    assert not (out / "full" / "adapter").exists()
    assert full["finetune/trainable_parameters"] == full["finetune/total_parameters"]
    assert "finetune/adapter_bytes" not in full
    assert full["test/base/ndcg@10"] == lora["test/base/ndcg@10"]  # the same base, the same test users


@pytest.mark.slow
def test_fine_tuned_card_reports_the_base_and_the_adapter(window_runs):
    out, *_ = window_runs
    text = str(render_model_card(out / "lora"))
    assert "## Fine-tuning" in text and "**LoRA** adapter" in text and str(out / "base" / "model") in text
    assert "Base model before fine-tuning" in text
    assert "adapter_model.safetensors" in text
    adapter_card = (out / "lora" / "adapter" / "README.md").read_text()  # ours, not peft's blank template
    assert "A **LoRA** adapter for the sidrec generative recommender" in adapter_card
    assert "PeftModel.from_pretrained(base" in adapter_card and "[More Information Needed]" not in adapter_card


def test_fine_tuning_a_different_catalogue_is_refused(window_runs, tmp_path):
    from sidrec.training.pipeline import run

    out, *_ = window_runs
    recipe = load_recipe(
        recipe_file(tmp_path),
        [*TINY, "data.max_users=1400", f"finetune.from_model={out}/base/model", f"output_dir={tmp_path}/x"],
    )
    with pytest.raises(RecipeError, match="codes for .* items but the data has .*only data.drop_last"):
        run(recipe)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([LORA], "adapt a saved model: set finetune.from_model"),
        (["finetune.train_last=2"], "adapt a saved model: set finetune.from_model"),
        (["finetune.from_model=runs/x/model", "joint.enabled=true"], "cannot be combined with joint.enabled"),
        (["finetune.from_model=runs/x/model", "finetune.peft={peft_type: NOPE}"], "is not a peft method"),
    ],
)
def test_conflicting_fine_tuning_settings_fail_before_any_work(tmp_path, overrides, message):
    from sidrec.training.pipeline import run

    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path}/run", *overrides])
    with pytest.raises(RecipeError, match=message):
        run(recipe)
    assert not (tmp_path / "run").exists()


def test_from_model_that_is_not_a_saved_model_names_the_fix(tmp_path):
    from sidrec.training.pipeline import run

    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path}/run", "finetune.from_model=nowhere"])
    with pytest.raises(RecipeError, match="not a saved sidrec model .*finished run's model directory"):
        run(recipe)


@pytest.fixture(scope="module")
def pushed_base(window_runs, hub_server):
    """The tiny base run's model directory on the local Hub server."""
    import warnings

    from sidrec.hub import HubPushWarning, push_recommender

    out, *_ = window_runs
    repo_id = f"{hub_server.user}/tiny-window-base-run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HubPushWarning)
        push_recommender(out / "base" / "model", repo_id)
    return repo_id


@pytest.mark.slow
def test_fine_tuning_starts_from_a_pushed_model(window_runs, pushed_base, hub_server, tmp_path):
    from sidrec.training.pipeline import run

    _, _, lora, _ = window_runs
    overrides = [*TINY, *WINDOW, f"finetune.from_model={pushed_base}", "training.epochs=1"]
    overrides.append(f"output_dir={tmp_path}/hub")
    metrics = run(load_recipe(recipe_file(tmp_path), overrides))
    assert all(metrics[key] == lora[key] for key in lora if key.startswith("test/base/"))
    missing = [*overrides, f"finetune.from_model={hub_server.user}/missing", f"output_dir={tmp_path}/x"]
    with pytest.raises(RecipeError, match="could not be loaded from the Hub"):
        run(load_recipe(recipe_file(tmp_path), missing))


@pytest.mark.slow
def test_train_cli_pushes_the_adapter_naming_its_hub_base(pushed_base, hub_server, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from peft import AutoPeftModelForSeq2SeqLM

    from sidrec.cli import main

    adapter_id, merged_id = f"{hub_server.user}/tiny-window-lora-cli", f"{hub_server.user}/tiny-window-merged-cli"
    argv = ["train", "--config", str(recipe_file(tmp_path)), "--hub_adapter_id", adapter_id]
    argv += ["--push_to_hub", "--hub_model_id", merged_id, *TINY, *WINDOW, LORA, "training.epochs=1"]
    assert main([*argv, f"finetune.from_model={pushed_base}", f"output_dir={tmp_path}/run"]) == 0

    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(HfApi().list_repo_files(adapter_id))
    card = Path(hf_hub_download(adapter_id, "README.md", cache_dir=tmp_path / "cache")).read_text()
    assert f"base_model: {pushed_base}" in card and f'PeftModel.from_pretrained(base, "{adapter_id}")' in card
    merged_card = Path(hf_hub_download(merged_id, "README.md", cache_dir=tmp_path / "cache")).read_text()
    assert f'model_id = "{merged_id}"' in merged_card
    # the adapter repository alone is enough: it names its base on the Hub
    model = AutoPeftModelForSeq2SeqLM.from_pretrained(adapter_id, cache_dir=tmp_path / "cache").eval()
    merged = AutoModel.from_pretrained(tmp_path / "run" / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    history = [[3, 17, 42], [5, 8]]
    assert torch.equal(model.recommend(history, tokenizer).items, merged.recommend(history, tokenizer).items)


def test_hub_adapter_id_without_an_adapter_fails_before_training(tmp_path, capsys):
    from sidrec.cli import main

    argv = ["train", "--config", str(recipe_file(tmp_path)), "--hub_adapter_id", "someone/x"]
    argv.append(f"output_dir={tmp_path}/o")
    assert main(argv) == 2
    assert "--hub_adapter_id uploads a PEFT adapter, but this recipe trains none" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_base_whose_item_table_differs_is_refused(window_runs, tmp_path):
    """Same item count, other raw ids at an index: the codes would point at the wrong items."""
    import json
    import shutil

    from sidrec.training.pipeline import run

    out, *_ = window_runs
    base = tmp_path / "base"
    shutil.copytree(out / "base" / "model", base)
    rows = [json.loads(line) for line in (base / "items.jsonl").read_text().splitlines()]
    rows[5]["item_id"], rows[6]["item_id"] = rows[6]["item_id"], rows[5]["item_id"]
    (base / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = load_recipe(
        recipe_file(tmp_path), [*TINY, *WINDOW, f"finetune.from_model={base}", f"output_dir={tmp_path}/x"]
    )
    with pytest.raises(RecipeError, match="indexes items differently from the data \\(item 5 is"):
        run(recipe)
