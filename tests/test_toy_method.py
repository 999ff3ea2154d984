"""A new method is one module: a toy method, written to a temporary file, runs through an ordinary recipe.

The module below declares what a method needs (a recipe section, a rule, an objective, its part of the
run's name, an extra metric, its model-card settings) and registers it. Nothing else in sidrec changes:
the recipe schema picks up its section from the registry, the run trains it, evaluates, saves, names it
``tiger+toy``, writes its metric and its card line, and the saved model loads back and recommends.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest
import torch

from sidrec.training.errors import RecipeError
from sidrec.training.objectives import OBJECTIVES
from sidrec.training.registry import recipe_sections, unregister_method

from .test_pipeline import TINY, recipe_file

TOY_METHOD = '''
"""Toy: an L2 penalty on the decoder's logits, switched on by its own recipe section."""

from dataclasses import dataclass

from sidrec.training.errors import RecipeError
from sidrec.training.objectives import Objective, register_objective
from sidrec.training.registry import Method, register_method


@dataclass
class ToyRecipe:
    enabled: bool = False
    weight: float = 0.01


@register_objective
class LogitPenalty(Objective):
    name = "toy_logit_penalty"

    def __call__(self, model, inputs, outputs):
        value = outputs.logits.float().pow(2).mean()
        return value, {"toy/logit_l2": value.detach()}


def check(recipe, objectives):
    if "toy_logit_penalty" in objectives and not recipe.toy.enabled:
        raise RecipeError("objective `toy_logit_penalty` belongs to the toy method: set toy.enabled: true")


def card_settings(recipe):
    section = recipe.get("toy") or {}
    return {"weight": section.get("weight")} if section.get("enabled") else None


METHOD = register_method(
    Method(
        name="toy",
        sections={"toy": ToyRecipe},
        check=check,
        name_suffix=lambda recipe: "+toy" if recipe.toy.enabled else "",
        extra_metrics=lambda recipe, model, tokenizer: {"toy/parameters": float(model.num_parameters())},
        card_settings=card_settings,
    )
)
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """The toy module, imported from a temporary file (so registered) and forgotten after the test."""
    module_file = tmp_path / "toy_method.py"
    module_file.write_text(textwrap.dedent(TOY_METHOD))
    spec = importlib.util.spec_from_file_location("toy_method", module_file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_method", module)
    spec.loader.exec_module(module)
    yield module
    unregister_method("toy")
    OBJECTIVES.pop("toy_logit_penalty", None)


def test_a_toy_method_in_one_new_module_trains_saves_reloads_and_cards(tmp_path, toy_method):
    from transformers import AutoModel

    import sidrec  # noqa: F401  (registers the Auto classes)
    from sidrec.recommender import Recommender
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    assert recipe_sections()["toy"] is toy_method.ToyRecipe
    overrides = [*TINY, f"output_dir={tmp_path / 'run'}", "training.epochs=1", "toy.enabled=true", "toy.weight=0.05"]
    overrides.append("training.objectives={ce: 1.0, toy_logit_penalty: 0.05}")
    recipe = load_recipe(recipe_file(tmp_path), overrides)
    assert recipe.toy.enabled and recipe.toy.weight == 0.05
    metrics = run(recipe)

    assert metrics["run/method"] == "tiger+toy" and 0.0 <= metrics["test/recall@10"] <= 1.0
    run_dir = tmp_path / "run"
    model = AutoModel.from_pretrained(run_dir / "model")
    assert metrics["toy/parameters"] == model.num_parameters()  # the hook saw the trained model
    logged = [
        row
        for path in (run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")
        for row in json.loads(path.read_text())["log_history"]
    ]
    assert any("loss_toy_logit_penalty" in row and "toy/logit_l2" in row for row in logged)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["run/method"] == "tiger+toy"
    assert "toy:\n  enabled: true\n  weight: 0.05" in (run_dir / "recipe.yaml").read_text()
    card = (run_dir / "model" / "README.md").read_text()
    assert "**toy** on top: weight 0.05" in card and "TIGER + TOY" in card

    recommender = Recommender.from_pretrained(str(run_dir / "model"))
    items = recommender.item_ids
    top = recommender.recommend([items[0], items[1]], top_k=5)
    assert len(top) == 5 and all(row.item_id in set(items) for row in top)
    for name, tensor in model.state_dict().items():  # the reloaded weights are the ones the run saved
        assert torch.equal(tensor, recommender.model.state_dict()[name]), name


def test_the_toy_method_section_gets_the_schema_s_errors(tmp_path, toy_method):
    from sidrec.training.recipe import check_recipe, load_recipe

    with pytest.raises(RecipeError, match="unknown recipe key toy.wieght. Did you mean 'weight'"):
        load_recipe(recipe_file(tmp_path), ["toy.wieght=0.1"])
    with pytest.raises(RecipeError, match="unknown recipe key tyo. Did you mean 'toy'"):
        load_recipe(recipe_file(tmp_path), ["tyo.enabled=true"])
    recipe = load_recipe(recipe_file(tmp_path), ["training.objectives={ce: 1.0, toy_logit_penalty: 0.1}"])
    with pytest.raises(RecipeError, match="belongs to the toy method: set toy.enabled: true"):
        check_recipe(recipe)


def test_without_the_toy_module_its_section_is_unknown(tmp_path):
    from sidrec.training.recipe import load_recipe

    with pytest.raises(RecipeError, match="unknown recipe key toy"):
        load_recipe(recipe_file(tmp_path), ["toy.enabled=true"])


def test_a_second_method_cannot_take_a_registered_section():
    from sidrec.training.registry import Method, register_method

    with pytest.raises(ValueError, match=r"recipe section\(s\) \['joint'\] belong to 'diger'"):
        register_method(Method(name="thief", sections={"joint": dict}))
