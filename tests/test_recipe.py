"""Recipes: every shipped recipe parses; a wrong key is an error that says what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidrec.training.methods import build_objectives
from sidrec.training.recipe import RecipeError, load_recipe, recipe_from_dict

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_recipes_parse(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    build_objectives(recipe.training.objectives)


def test_unknown_key_names_the_key_and_the_closest_valid_one():
    with pytest.raises(RecipeError, match=r"unknown recipe key training\.epoch\. Did you mean 'epochs'"):
        recipe_from_dict({"training": {"epoch": 3}})
    with pytest.raises(RecipeError, match="unknown recipe key data.max_histroy"):
        recipe_from_dict({"data": {"path": "x", "max_histroy": 3}})


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ndata: {path: somewhere}\n")
    recipe = load_recipe(path, ["training.epochs=2", "model.d_model=64", "evaluation.ks=[5, 10]"])
    assert recipe.training.epochs == 2 and recipe.model.d_model == 64 and recipe.evaluation.ks == [5, 10]
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe(path, ["training.epochs"])


def test_missing_recipe_file_and_unknown_objective():
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("configs/nope.yaml")
    with pytest.raises(ValueError, match="unknown objective 'sodaa'"):
        build_objectives({"sodaa": 1.0})


def test_float_settings_accept_yaml_exponent_strings_and_reject_words(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ndata: {path: x}\n")
    recipe = load_recipe(path, ["joint.tokenizer_learning_rate=1e-5", "training.learning_rate=3e-3"])
    assert recipe.joint.tokenizer_learning_rate == 1e-5 and recipe.training.learning_rate == 3e-3
    with pytest.raises(RecipeError, match="joint.tokenizer_learning_rate must be a number"):
        load_recipe(path, ["joint.tokenizer_learning_rate=fast"])


def test_overrides_may_stand_on_both_sides_of_a_flag():
    """`train.py --config r.yaml a=1 --overwrite_output_dir b=2` keeps both overrides (argparse alone drops b=2)."""
    import argparse

    from sidrec.cli import add_train_arguments, build_parser, parse_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parse_arguments(parser, ["--config", "r.yaml", "seed=1", "--overwrite_output_dir", "training.epochs=2"])
    assert args.overrides == ["seed=1", "training.epochs=2"] and args.overwrite_output_dir
    args = parse_arguments(build_parser(), ["train", "--config", "r.yaml", "a=1", "--push_to_hub", "b=2"])
    assert args.overrides == ["a=1", "b=2"] and args.push_to_hub
    with pytest.raises(SystemExit):
        parse_arguments(parser, ["--config", "r.yaml", "--no-such-flag"])
