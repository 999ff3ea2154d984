"""Recipe files on disk: one YAML recipe, or a recipe over the chain of ``base:`` recipes under it.

A recipe may start with ``base: <path relative to this file>``: the base is read first (it may have a
base of its own) and this file's mapping is merged over it, so a variant states only what it changes.
Mappings merge key by key; a list or a scalar replaces the base's value whole. The schema
(``recipe.py``) never sees ``base``: it builds and checks the one merged mapping, so a misspelt key is
the same error whichever file of the chain holds it, and a run's ``recipe.yaml`` is the resolved recipe.

This module only reads and merges; it knows no section or key of the schema.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError

BASE_KEY = "base"


def read_recipe_values(path: str | Path) -> dict[str, Any]:
    """The settings of the recipe file at ``path``, its bases merged under it, without any ``base`` key."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(
            f"recipe file {path} not found; recipes live in configs/ (e.g. configs/scientific-tiger-demo.yaml)"
        )
    return _resolve(path, chain=())


def merge_over(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` over ``base``: mappings merge key by key (at any depth), anything else replaces.

    A list replaces the base's list whole (``evaluation.ks: [10, 20]`` is the new cut-offs, not two more),
    and so does ``null``: that is how a variant drops a mapping its base sets (``finetune.peft: null``).
    Neither argument is changed.
    """
    merged = dict(base)
    for key, value in values.items():
        below = merged.get(key)
        merged[key] = merge_over(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def _resolve(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """``path``'s mapping over its bases'; ``chain`` holds the files that named it, to catch a cycle."""
    values = _read_mapping(path, named_by=chain[-1] if chain else None)
    if BASE_KEY not in values:
        return values
    base = values.pop(BASE_KEY)
    if not isinstance(base, str) or not base.strip():
        raise RecipeError(
            f"recipe file {path}: base must be the path of another recipe file, relative to this one "
            f"(e.g. base: scientific-tiger-demo.yaml), got {base!r}"
        )
    base_path = Path(os.path.normpath(path.parent / base))
    seen = [*chain, path]
    if base_path.resolve() in {file.resolve() for file in seen}:
        names = " -> ".join(str(file) for file in [*seen, base_path])
        raise RecipeError(f"recipe bases form a cycle: {names}; remove the base: key that closes it")
    if not base_path.exists():
        raise RecipeError(
            f"recipe file {path} names base: {base}, which resolves to {base_path} (relative to the recipe "
            f"file's own folder, {path.parent}), and that file does not exist: fix the path, e.g. "
            f"base: {Path(base).name} for a recipe in the same folder"
        )
    return merge_over(_resolve(base_path, tuple(seen)), values)


def _read_mapping(path: Path, named_by: Path | None) -> dict[str, Any]:
    """One file's own mapping (an empty file is an empty mapping)."""
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = f" (the base of {named_by})" if named_by else ""
        reason = " ".join(str(error).split())
        raise RecipeError(f"recipe file {path}{where} is not valid YAML ({reason}); fix the line it names") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        what = f"base recipe {path}, named by {named_by}," if named_by else f"recipe file {path}"
        raise RecipeError(
            f"{what} must be a mapping of recipe sections (name: ..., data: {{path: ...}}, ...), "
            f"got a {type(values).__name__}"
        )
    return values
