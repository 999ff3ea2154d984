"""``quantizer.codes_from``: a fresh recommender on a saved run's codes (two-stage DIGER)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from sidrec.training.errors import RecipeError
from sidrec.training.recipe import load_recipe

from .test_pipeline import TINY, recipe_file
from .test_resume import JOINT


@pytest.fixture(scope="module")
def diger_then_tiger(tmp_path_factory):
    """A tiny end-to-end DIGER run, then TIGER trained from scratch on the codes it ended with."""
    from sidrec.training.pipeline import run

    out = tmp_path_factory.mktemp("two-stage")
    diger = load_recipe(recipe_file(out), [*TINY, *JOINT, f"output_dir={out}/diger"])
    run(diger)
    tiger = load_recipe(
        recipe_file(out),
        [*TINY, "quantizer.num_levels=2", f"quantizer.codes_from={out}/diger/model", f"output_dir={out}/tiger"],
    )
    metrics = run(tiger)
    return out, metrics


@pytest.mark.slow
def test_the_second_stage_reads_the_first_stages_final_codes_and_recommends(diger_then_tiger):
    out, metrics = diger_then_tiger
    first = AutoTokenizer.from_pretrained(out / "diger" / "model")
    second = AutoTokenizer.from_pretrained(out / "tiger" / "model")
    assert torch.equal(first.item_codes, second.item_codes)  # the codes DIGER's living table ended with
    fitted_here = json.loads((out / "diger" / "metrics.json").read_text())
    assert metrics["run/method"] == "tiger"
    assert metrics["codes/collision_rate"] == pytest.approx(fitted_here["codes/final/collision_rate"])
    # the recipe the run saved describes the codes it read (3 levels + collision level), not the override's 2
    saved = load_recipe(out / "tiger" / "recipe.yaml")
    assert saved.quantizer.num_levels == first.num_levels - 1 and saved.quantizer.codebook_size == first.codebook_size
    card = (out / "tiger" / "model" / "README.md").read_text()  # names where the codes came from, no fit
    assert f"on the semantic IDs of the saved run `{out}/diger/model`" in card and "fitted 60 epochs" not in card
    assert "as the saved run left them" in card
    model = AutoModel.from_pretrained(out / "tiger" / "model")
    ranked = model.recommend([[0, 1, 2], [5, 9]], second, top_k=10).items.tolist()
    assert all(len(set(row)) == 10 and 0 <= min(row) and max(row) < second.num_items for row in ranked)


@pytest.mark.slow
def test_codes_from_another_catalogue_is_refused(diger_then_tiger, tmp_path):
    from sidrec.training.pipeline import run

    out, _ = diger_then_tiger
    overrides = [*TINY, "data.max_users=1400", f"quantizer.codes_from={out}/diger/model", f"output_dir={tmp_path}/x"]
    with pytest.raises(RecipeError, match="quantizer.codes_from has codes for .* items but the data has"):
        run(load_recipe(recipe_file(tmp_path), overrides))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["quantizer.codes_from=runs/x/model", *JOINT], "cannot be combined with joint.enabled"),
        (["quantizer.codes_from=runs/x/model", "letter.enabled=true"], "cannot be combined with letter.enabled"),
        (["quantizer.codes_from=runs/x/model", "sasrec.enabled=true"], "this recipe trains none"),
        (["quantizer.codes_from=nowhere"], "quantizer.codes_from='nowhere' is not a saved sidrec model"),
    ],
)
def test_codes_from_settings_that_cannot_work_fail_before_training(tmp_path, overrides, message):
    from sidrec.training.pipeline import run

    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path}/run", *overrides])
    with pytest.raises(RecipeError, match=message):
        run(recipe)
    assert not (tmp_path / "run" / "checkpoints").exists()
