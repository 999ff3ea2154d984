"""Recipe inheritance (``base:``): the shipped recipes resolve exactly as they did before they were rewritten
over bases, value for value.

``tests/fixtures/resolved_recipes.json`` holds every shipped recipe as a run records it (``recipe.yaml``),
written from the configs as they stood before any of them took a ``base:``. configs/beauty-tiger.yaml in
particular must not move by one value: the Beauty reproduction resumes on it across sessions. A recipe
whose settings change on purpose, or a new recipe, is recorded with
``python -m tests.test_recipe_inheritance --write`` (and the diff of the fixture reviewed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sidrec.training.recipe import load_recipe

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
    FIXTURE.write_text(json.dumps(recipes, indent=1, sort_keys=True) + "\n")


def test_the_fixture_records_every_shipped_recipe_and_no_other():
    shipped = {path.relative_to(ROOT).as_posix() for path in SHIPPED}
    assert set(recorded()) == shipped, "record new or removed recipes: python -m tests.test_recipe_inheritance --write"


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_recipe_resolves_exactly_as_recorded(path):
    expected = recorded()[path.relative_to(ROOT).as_posix()]
    actual = resolved(path)
    assert actual == expected
    # == takes 1 for 1.0 and True for 1; the JSON text does not: a value may not change its type either
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_fixture()
    print(f"wrote {FIXTURE.relative_to(ROOT)}: {len(SHIPPED)} recipes")
