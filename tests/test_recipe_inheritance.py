"""Recipe inheritance (``base:``): the shipped recipes resolve exactly as they did before they were rewritten
over bases, value for value.

``tests/fixtures/resolved_recipes.json`` holds every shipped recipe as a run records it (``recipe.yaml``),
written from the configs as they stood before any of them took a ``base:``. configs/beauty-tiger.yaml in
particular must not move by one value: the Beauty reproduction resumes on it across sessions. A recipe
whose settings change on purpose, or a new recipe, is recorded with
``python -m tests.test_recipe_inheritance --write`` (and the diff of the fixture reviewed).

Then the merge's rules and errors on hand-made files, and a real run from a recipe over a base: its
``recipe.yaml``, which the results harness reads, is the resolved recipe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from sidrec.training.recipe import RecipeError, load_recipe, recipe_from_dict
from sidrec.training.recipe_files import merge_over, read_recipe_values

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "resolved_recipes.json"
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))  # the runnable recipes; configs/bases/ holds only bases


def resolved(path: Path) -> dict:
    """The recipe as a run records it, through JSON (so the comparison sees what a results file would)."""
    return json.loads(json.dumps(load_recipe(path).to_dict()))


def recorded() -> dict[str, dict]:
    return json.loads(FIXTURE.read_text())


def write_fixture() -> None:
    recipes = {path.relative_to(ROOT).as_posix(): resolved(path) for path in SHIPPED}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(recipes, indent=1) + "\n")  # in order: see the test below


def test_the_fixture_records_every_shipped_recipe_and_no_other():
    shipped = {path.relative_to(ROOT).as_posix() for path in SHIPPED}
    assert set(recorded()) == shipped, "record new or removed recipes: python -m tests.test_recipe_inheritance --write"


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_recipe_resolves_exactly_as_recorded(path):
    """Value, type and order: == takes 1 for 1.0 and True for 1, and ignores the order of a mapping, but the
    trainer sums ``training.objectives`` in their order (a float sum, so another order is another run). The JSON
    text of each section sees all three; the order of the sections themselves is the schema's, not a recipe's."""
    expected = recorded()[path.relative_to(ROOT).as_posix()]
    actual = resolved(path)
    assert actual == expected
    assert set(actual) == set(expected)
    for section, values in expected.items():
        assert json.dumps(actual[section]) == json.dumps(values), section


def test_every_sasrec_a_shipped_recipe_trains_for_its_codes_states_all_its_settings():
    """``collaborative_recipe`` caches the SASRec under a hash of that recipe file's own text: a base it named
    could change the SASRec without changing the hash, and every recipe reading it would get a stale table."""
    named = {load_recipe(path).embeddings.collaborative_recipe for path in SHIPPED} - {None}
    assert named == {"configs/scientific-sasrec.yaml", "configs/beauty-sasrec.yaml"}
    for sasrec in named:
        assert "base" not in yaml.safe_load((ROOT / sasrec).read_text()), sasrec


# ----- the merge, on hand-made files ----------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_mappings_merge_key_by_key_and_lists_and_scalars_replace(tmp_path):
    write(
        tmp_path / "base.yaml",
        "name: base\nseed: 7\ndata: {path: somewhere, max_history: 20, text_fields: [title, brand]}\n"
        "training: {epochs: 4, objectives: {ce: 1.0, soda: {weight: 1.0, temperature: 1.0}}}\n"
        "evaluation: {ks: [5, 10, 20], num_beams: 20}\nfinetune: {peft: {peft_type: LORA, r: 8}}\n",
    )
    child = write(
        tmp_path / "child.yaml",
        "base: base.yaml\nname: child\ndata: {text_fields: [title]}\n"
        "training: {objectives: {soda: {temperature: 0.5}}}\nevaluation: {ks: [10]}\nfinetune: {peft: null}\n",
    )
    recipe = load_recipe(child)
    assert recipe.name == "child" and recipe.seed == 7  # scalars: this file's, else the base's
    assert (recipe.data.path, recipe.data.max_history, recipe.data.text_fields) == ("somewhere", 20, ["title"])
    assert recipe.training.epochs == 4
    soda = {"weight": 1.0, "temperature": 0.5}  # a mapping inside a mapping merges too
    assert recipe.training.objectives == {"ce": 1.0, "soda": soda}
    assert recipe.evaluation.ks == [10] and recipe.evaluation.num_beams == 20  # a list is replaced whole
    assert recipe.finetune.peft is None  # null drops a mapping the base sets
    assert "base" not in recipe.to_dict()


def test_a_base_may_have_a_base_and_overrides_apply_last(tmp_path):
    write(tmp_path / "bases" / "root.yaml", "data: {path: somewhere}\nseed: 1\ntraining: {epochs: 2, batch_size: 8}\n")
    write(tmp_path / "bases" / "middle.yaml", "base: root.yaml\nseed: 2\ntraining: {epochs: 3}\n")
    child = write(tmp_path / "configs" / "leaf.yaml", "base: ../bases/middle.yaml\nname: leaf\n")
    recipe = load_recipe(child, ["training.epochs=9", "seed=5"])
    assert (recipe.name, recipe.seed, recipe.training.epochs, recipe.training.batch_size) == ("leaf", 5, 9, 8)
    assert load_recipe(child).seed == 2 and load_recipe(child).training.epochs == 3


def test_a_base_is_found_relative_to_the_recipe_file_not_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "configs" / "bases" / "b.yaml", "data: {path: somewhere}\nseed: 3\n")
    child = write(tmp_path / "configs" / "c.yaml", "base: bases/b.yaml\nname: c\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_recipe(child).seed == 3


def test_merge_over_changes_neither_mapping():
    base = {"training": {"epochs": 4, "objectives": {"ce": 1.0}}, "evaluation": {"ks": [5, 10]}}
    values = {"training": {"objectives": {"soda": 1.0}}, "evaluation": {"ks": [10]}}
    merged = merge_over(base, values)
    assert merged == {"training": {"epochs": 4, "objectives": {"ce": 1.0, "soda": 1.0}}, "evaluation": {"ks": [10]}}
    assert base == {"training": {"epochs": 4, "objectives": {"ce": 1.0}}, "evaluation": {"ks": [5, 10]}}
    assert values == {"training": {"objectives": {"soda": 1.0}}, "evaluation": {"ks": [10]}}


def test_base_never_reaches_the_schema(tmp_path):
    write(tmp_path / "b.yaml", "data: {path: somewhere}\n")
    assert "base" not in read_recipe_values(write(tmp_path / "c.yaml", "base: b.yaml\nname: c\n"))
    with pytest.raises(RecipeError, match="unknown recipe key base"):  # the schema itself knows no such key
        recipe_from_dict({"base": "b.yaml", "data": {"path": "x"}})


@pytest.mark.parametrize("where", ["base", "child"])
def test_a_misspelt_key_in_either_file_gets_the_did_you_mean_error(tmp_path, where):
    typo = "training: {epoch: 3}\n"
    write(tmp_path / "b.yaml", "data: {path: somewhere}\n" + (typo if where == "base" else ""))
    child = write(tmp_path / "c.yaml", "base: b.yaml\nname: c\n" + (typo if where == "child" else ""))
    with pytest.raises(RecipeError, match=r"unknown recipe key training\.epoch\. Did you mean 'epochs'"):
        load_recipe(child)
    write(tmp_path / "b.yaml", "data: {path: somewhere, max_histroy: 3}\n")
    with pytest.raises(RecipeError, match=r"unknown recipe key data\.max_histroy\. Did you mean 'max_history'"):
        load_recipe(write(tmp_path / "c.yaml", "base: b.yaml\nname: c\n"))


def test_a_missing_base_names_the_recipe_the_path_it_resolved_to_and_the_fix(tmp_path):
    child = write(tmp_path / "configs" / "c.yaml", "base: bases/nope.yaml\nname: c\n")
    with pytest.raises(RecipeError) as error:
        load_recipe(child)
    message = str(error.value)
    assert f"recipe file {child} names base: bases/nope.yaml" in message
    assert f"resolves to {tmp_path / 'configs' / 'bases' / 'nope.yaml'}" in message
    assert "relative to the recipe file's own folder" in message and "fix the path" in message


def test_a_cycle_of_bases_names_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "base: a.yaml\ndata: {path: x}\n")
    chain = f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}"
    with pytest.raises(RecipeError, match="recipe bases form a cycle") as error:
        load_recipe(tmp_path / "a.yaml")
    assert chain in str(error.value)
    with pytest.raises(RecipeError, match="recipe bases form a cycle"):
        load_recipe(write(tmp_path / "self.yaml", "base: ./self.yaml\n"))


@pytest.mark.parametrize(
    ("base_text", "message"),
    [
        ("- name: a list\n", r"base recipe .*b\.yaml, named by .*c\.yaml, must be a mapping .* got a list"),
        ("just words\n", "must be a mapping of recipe sections .* got a str"),
        ("data: {path: x\n", r"b\.yaml \(the base of .*c\.yaml\) is not valid YAML"),
    ],
)
def test_a_base_that_is_not_a_mapping_is_refused(tmp_path, base_text, message):
    write(tmp_path / "b.yaml", base_text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path / "c.yaml", "base: b.yaml\nname: c\n"))


def test_a_recipe_file_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe file .*c\.yaml must be a mapping of recipe sections"):
        load_recipe(write(tmp_path / "c.yaml", "- base: b.yaml\n"))


@pytest.mark.parametrize("value", ["null", "''", "[a.yaml]", "3"])
def test_base_must_name_a_file(tmp_path, value):
    with pytest.raises(RecipeError, match="base must be the path of another recipe file"):
        load_recipe(write(tmp_path / "c.yaml", f"base: {value}\nname: c\n"))


# ----- what a run records ---------------------------------------------------------------------------------


def _mapping(overrides: list[str]) -> dict:
    """``key=value`` overrides as the nested mapping a recipe file would hold."""
    tree: dict = {}
    for override in overrides:
        dotted, raw = override.split("=", 1)
        *parents, leaf = dotted.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(raw)
    return tree


def code_fit_of_the_harness():
    """benchmarks' ``code_fit``, which labels every results row from the run's ``recipe.yaml``."""
    from .conftest import load_benchmark_script

    for script in ("quality_runner", "quality"):  # the harness's runner, in its own module or in quality.py
        if (ROOT / "benchmarks" / f"{script}.py").exists():
            module = load_benchmark_script(script)
            if hasattr(module, "code_fit"):
                return module.code_fit
    raise AssertionError("benchmarks/quality*.py define no code_fit")


@pytest.mark.slow  # about 20 s: a tiny TIGER trained for one epoch
def test_a_run_from_a_recipe_over_a_base_records_the_resolved_recipe(tmp_path):
    """train.py's path (``sidrec train``) on a tiny real slice; the base alone sets the quantizer's dead-code
    restarts, the harness's label of the run reads them from ``recipe.yaml``."""
    from sidrec.cli import main

    from .test_pipeline import TINY

    base = _mapping([*TINY, "quantizer.restart_dead_codes=true", "quantizer.epochs=20", "training.epochs=1"])
    write(tmp_path / "configs" / "bases" / "tiny.yaml", yaml.safe_dump(base))
    child = write(
        tmp_path / "configs" / "tiny-child.yaml",
        f"base: bases/tiny.yaml\nname: tiny-child\noutput_dir: {tmp_path / 'run'}\nquantizer: {{epochs: 30}}\n",
    )
    assert main(["train", "--config", str(child)]) in (0, None)
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert "base" not in saved
    assert saved == load_recipe(child).to_dict()  # every setting, the base's included
    assert saved["quantizer"]["restart_dead_codes"] is True and saved["quantizer"]["epochs"] == 30
    assert load_recipe(tmp_path / "run" / "recipe.yaml").to_dict() == saved  # a saved recipe loads as it is
    assert code_fit_of_the_harness()(tmp_path / "run") == "rqvae-30+restarts"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_fixture()
    print(f"wrote {FIXTURE.relative_to(ROOT)}: {len(SHIPPED)} recipes")
