"""LETTER's regularisers and collaborative semantic IDs: losses by hand, a real run through the recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from sidrec.training.collaborative import combine_embeddings, load_collaborative_embeddings
from sidrec.training.errors import RecipeError
from sidrec.training.methods.letter import collaborative_loss, diversity_loss, group_positives
from sidrec.training.recipe import check_recipe, load_recipe

from .test_pipeline import TINY, collaborative_overrides, recipe_file


def test_collaborative_loss_by_hand():
    quantized = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    collaborative = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # scores [[2, 0], [0, 3]]: each item's own is best
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-3))) / 2
    assert collaborative_loss(quantized, collaborative).item() == pytest.approx(expected, rel=1e-6)
    swapped = collaborative_loss(quantized, collaborative.flip(0))  # each item scores the other's vector higher
    assert swapped.item() > collaborative_loss(quantized, collaborative).item()


def test_diversity_loss_by_hand():
    chosen = torch.tensor([[1.0, 0.0]])
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # similarities 1, 0, 1; positive: code 2
    expected = -math.log(math.e / (math.e + 1 + math.e))
    assert diversity_loss(chosen, codebook, torch.tensor([2])).item() == pytest.approx(expected, rel=1e-6)


def test_group_positives_are_other_codes_of_the_same_group():
    groups = torch.tensor([0, 0, 1, 1, 1, 2])  # code 5 is alone in its group
    codes = torch.tensor([0, 2, 3, 5] * 50)
    positives = group_positives(codes, groups, torch.Generator().manual_seed(0))
    assert torch.equal(groups[positives], groups[codes])
    assert ((positives != codes) | (codes == 5)).all() and (positives[codes == 5] == 5).all()
    assert set(positives[codes == 2].tolist()) == {3, 4}  # drawn among the others, both appear


def test_collaborative_embeddings_are_the_sasrec_table_in_catalogue_order(sasrec_run):
    out, _ = sasrec_run
    model = AutoModel.from_pretrained(out / "model")
    rows = [json.loads(line) for line in (out / "model" / "items.jsonl").read_text().splitlines()]
    order = [rows[3]["item_id"], rows[0]["item_id"], rows[7]["item_id"]]
    table = load_collaborative_embeddings(out, order)
    torch.testing.assert_close(table, model.item_embeddings.weight.detach()[[4, 1, 8]])  # row 0 is padding
    with pytest.raises(RecipeError, match="never saw 1 of this catalogue's 2 items"):
        load_collaborative_embeddings(out, [rows[0]["item_id"], "not-an-item"])
    both = combine_embeddings(torch.randn(3, 5), table, "text+collaborative")
    assert both.shape == (3, 5 + table.size(1)) and torch.allclose(both[:, :5].norm(dim=1), torch.ones(3))


def _tiny_collaborative_overrides(tmp_path: Path) -> list[str]:
    """The tiny recipe reading a 1-epoch SASRec's item table, cached under ``tmp_path``."""
    return [*TINY, f"output_dir={tmp_path / 'x'}", *collaborative_overrides(tmp_path)]


def test_a_collaborative_recipe_trains_its_sasrec_once_and_reuses_the_cache(tmp_path):
    from sidrec.training.pipeline import ensure_collaborative_run

    overrides = _tiny_collaborative_overrides(tmp_path)
    recipe = load_recipe(recipe_file(tmp_path), overrides)
    check_recipe(recipe)
    messages = []
    ensure_collaborative_run(recipe, say=messages.append)
    run_dir = Path(recipe.embeddings.collaborative_run)
    assert run_dir.parent == tmp_path / "cache" / "collaborative" and run_dir.name.startswith("sasrec-")
    assert json.loads((run_dir / "metrics.json").read_text())["run/method"] == "sasrec"
    assert "training" in messages[0]
    check_recipe(recipe)  # a run's saved recipe names both the SASRec recipe and its cached run: still valid
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    again = load_recipe(recipe_file(tmp_path), overrides)
    ensure_collaborative_run(again, say=messages.append)
    assert again.embeddings.collaborative_run == str(run_dir) and "cached" in messages[1]
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp  # not trained again
    from sidrec.training.data import load_sequential_data

    data = load_sequential_data(recipe.data, verbose=False)
    table = load_collaborative_embeddings(run_dir, data.item_ids)
    assert table.shape == (data.num_items, 16)
    # Other data (here a shorter history) is another SASRec: another cache folder.
    other = load_recipe(recipe_file(tmp_path), [*overrides, "data.max_history=5"])
    from sidrec.training.recipe import collaborative_recipe

    assert collaborative_recipe(other).output_dir != str(run_dir)


def test_a_run_that_finds_the_cache_being_trained_waits_and_reads_it(tmp_path):
    """Two runs side by side: the second waits on the first's lock and reuses its SASRec, training none."""
    import threading
    import time

    from filelock import FileLock

    from sidrec.training.pipeline import ensure_collaborative_run, run
    from sidrec.training.recipe import collaborative_recipe

    recipe = load_recipe(recipe_file(tmp_path), _tiny_collaborative_overrides(tmp_path))
    sasrec = collaborative_recipe(recipe)
    Path(sasrec.output_dir).parent.mkdir(parents=True)  # where the first run's lock lives
    messages = []
    second = threading.Thread(target=ensure_collaborative_run, args=(recipe,), kwargs={"say": messages.append})
    with FileLock(f"{sasrec.output_dir}.lock"):  # the first run holds the cache while it trains
        second.start()
        for _ in range(300):
            if messages:
                break
            time.sleep(0.1)
        assert "another run is building" in messages[0] and "waiting" in messages[0]
        run(sasrec, overwrite_output_dir=True)
        assert second.is_alive() and len(messages) == 1  # still waiting: it has neither trained nor read
    second.join(timeout=120)
    assert not second.is_alive()
    assert "the cached SASRec run" in messages[1] and len(messages) == 2
    assert recipe.embeddings.collaborative_run == sasrec.output_dir


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["embeddings.collaborative_recipe=configs/scientific-tiger-demo.yaml"], "does not train a SASRec"),
        (["embeddings.collaborative_recipe=configs/none.yaml"], "recipe file configs/none.yaml not found"),
        (
            ["embeddings.collaborative_recipe=configs/scientific-sasrec.yaml", "embeddings.collaborative_run=runs/x"],
            "not both",
        ),
        (["embeddings.source=collab"], "embeddings.source must be one of"),
        (["embeddings.source=collaborative"], "set embeddings.collaborative_run"),
        (["embeddings.collaborative_run=runs/none"], "holds no saved model"),
        (["letter.enabled=true"], "letter's collaborative loss needs a trained SASRec"),
        (["letter.enabled=true", "letter.collaborative_weight=0", "letter.diversity_groups=0"], "diversity_groups"),
    ],
)
def test_bad_collaborative_settings_fail_before_any_work(tmp_path, overrides, message):
    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path / 'x'}", *overrides])
    with pytest.raises(RecipeError, match=message):
        check_recipe(recipe)


def run_reload_and_recommend(tmp_path, sasrec, name: str, overrides: list[str]):
    """Train a tiny recipe over the SASRec run's table; reload the saved model; its top-10 of 16 test users.

    Every recommended item must exist and no list may repeat one, as for any other model.
    """
    from sidrec.training.data import load_sequential_data
    from sidrec.training.pipeline import run

    out = tmp_path / name
    recipe_overrides = [*TINY, f"output_dir={out}", f"embeddings.collaborative_run={sasrec}", *overrides]
    recipe = load_recipe(recipe_file(tmp_path), recipe_overrides)
    metrics = run(recipe)
    assert 0 <= metrics["test/recall@10"] <= 1
    model, tokenizer = AutoModel.from_pretrained(out / "model"), AutoTokenizer.from_pretrained(out / "model")
    data = load_sequential_data(recipe.data, verbose=False)
    histories = [row["history"] for row in data.splits["test"].select(range(16))]
    items = model.recommend(histories, tokenizer, top_k=10).items
    assert (items >= 0).all() and (items < tokenizer.num_items).all()
    assert all(len(set(row)) == 10 for row in items.tolist())
    return metrics, tokenizer


@pytest.mark.slow
def test_letter_over_collaborative_sids_saves_loads_and_recommends(sasrec_run, tmp_path):
    overrides = ["embeddings.source=text+collaborative", "letter.enabled=true"]
    metrics, tokenizer = run_reload_and_recommend(tmp_path, sasrec_run[0], "letter", overrides)
    assert metrics["run/method"] == "letter-textcf"
    assert tokenizer.quantizer.config.input_dim == 384 + 32  # MiniLM text beside the 32-d SASRec table
    assert tokenizer.quantizer.config.sinkhorn_levels == [-1]  # LETTER balances the last level


FROZEN = ["joint.enabled=true", "joint.trainable=false", "joint.uncertainty_decay=none"]  # SODA reads frozen codes


@pytest.mark.parametrize(
    "overrides, name",
    [
        (["letter.enabled=true", "letter.collaborative_weight=0"], "letter"),
        (
            [
                "letter.enabled=true",
                "letter.collaborative_weight=0",
                "training.objectives={ce: 1.0, soda: 0.1}",
                *FROZEN,
            ],
            "letter+soda",
        ),  # SODA over LETTER's codes: the SODA paper's own backbone
        (["embeddings.source=collaborative"], "tiger-cf"),
        (
            ["embeddings.source=text+collaborative", "training.objectives={ce: 1.0, soda: 0.1}", *FROZEN],
            "tiger-textcf+soda",
        ),
    ],
)
def test_collaborative_methods_are_named_from_the_recipe(sasrec_run, tmp_path, overrides, name):
    from sidrec.training.methods import method_name

    run = f"embeddings.collaborative_run={sasrec_run[0]}"
    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path / 'x'}", run, *overrides])
    check_recipe(recipe)
    assert method_name(recipe) == name
