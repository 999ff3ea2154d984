"""Collaborative item embeddings: the item table of a trained SASRec, aligned to a catalogue.

LETTER's collaborative regulariser and ETEGRec's tokenizer read what a sequential model learned
about each item from the interactions alone. sidrec takes it from a finished SASRec run: one named
by ``embeddings.collaborative_run`` (``python train.py --config configs/<data>-sasrec.yaml``), or one
it trains itself from ``embeddings.collaborative_recipe`` on the recipe's own data, cached like the
text embeddings (:func:`ensure_collaborative_run`). The run's item order is matched to the catalogue
by raw item id, so a SASRec trained on the same data with other filters still lines up, and an item
it never saw is a clear error.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .data.item_table import read_item_table
from .errors import RecipeError

if TYPE_CHECKING:
    from .recipe import Recipe

EMBEDDING_SOURCES = ("text", "collaborative", "text+collaborative")


def collaborative_recipe(recipe: Recipe) -> Recipe:
    """The SASRec recipe ``embeddings.collaborative_recipe`` names, on ``recipe``'s data, in its cache folder.

    The SASRec keeps its own seed and training budget (its early stopping), so every seed and budget of a
    grid reads one converged table; only the data (path, filters, history length) comes from ``recipe``,
    so that the items line up. The folder's name is a hash of the SASRec recipe's text and that data.
    """
    from .recipe import load_recipe

    path = Path(recipe.embeddings.collaborative_recipe)
    sasrec = load_recipe(path)
    if not sasrec.sasrec.enabled:
        raise RecipeError(
            f"embeddings.collaborative_recipe={path} does not train a SASRec (sasrec.enabled is false): name a "
            "SASRec recipe such as configs/scientific-sasrec.yaml"
        )
    sasrec.data = copy.deepcopy(recipe.data)
    blob = json.dumps([path.read_text(), dataclasses.asdict(recipe.data)], sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    sasrec.output_dir = str(Path(recipe.embeddings.cache_dir).parent / "collaborative" / f"{path.stem}-{key}")
    return sasrec


def ensure_collaborative_run(recipe: Recipe, say=print) -> None:
    """Point ``embeddings.collaborative_run`` at the cached SASRec of ``collaborative_recipe``, training it once.

    A folder with a saved model and ``metrics.json`` is finished and reused; anything else (absent, or a run
    that was interrupted) is trained from the start. Does nothing when the recipe names a run itself.
    """
    if recipe.embeddings.collaborative_run or not recipe.embeddings.collaborative_recipe:
        return
    from .pipeline import run

    sasrec = collaborative_recipe(recipe)
    output_dir = Path(sasrec.output_dir)
    if (output_dir / "metrics.json").exists() and read_item_table(output_dir / "model") is not None:
        say(f"Collaborative embeddings: the cached SASRec run {output_dir}")
    else:
        say(f"Collaborative embeddings: training {recipe.embeddings.collaborative_recipe} into {output_dir}")
        run(sasrec, overwrite_output_dir=True)
    recipe.embeddings.collaborative_run = str(output_dir)


def load_collaborative_embeddings(run_dir: str | Path, item_ids: list[str]) -> torch.Tensor:
    """SASRec's item embeddings (N, hidden) for ``item_ids``, in that order."""
    from transformers import AutoModel

    from ..modeling.modeling_sasrec import SASRecForSequentialRecommendation

    model_dir = Path(run_dir) / "model"
    table = read_item_table(model_dir) if model_dir.is_dir() else None
    if table is None:
        raise RecipeError(
            f"embeddings.collaborative_run={run_dir} holds no finished run (model/ with items.jsonl): train one with "
            f"`python train.py --config configs/scientific-sasrec.yaml output_dir={run_dir}`"
        )
    model = AutoModel.from_pretrained(model_dir)
    if not isinstance(model, SASRecForSequentialRecommendation):
        raise RecipeError(
            f"embeddings.collaborative_run={run_dir} is a {type(model).__name__} run; collaborative embeddings "
            "come from a SASRec run's item table (a recipe with sasrec.enabled: true)"
        )
    position = {item_id: index for index, item_id in enumerate(table[0])}
    missing = [item_id for item_id in item_ids if item_id not in position]
    if missing:
        raise RecipeError(
            f"the SASRec run {run_dir} never saw {len(missing):,} of this catalogue's {len(item_ids):,} items "
            f"(e.g. {missing[:3]}): train it on the same data and filters as this recipe"
        )
    rows = torch.tensor([position[item_id] for item_id in item_ids]) + 1  # row 0 is SASRec's padding
    return model.item_embeddings.weight.detach()[rows].float().clone()


def combine_embeddings(text: torch.Tensor | None, collaborative: torch.Tensor | None, source: str) -> torch.Tensor:
    """The quantizer's input for ``source``: text, collaborative, or both L2-normalised side by side."""
    if source == "text":
        return text
    if source == "collaborative":
        return collaborative
    return torch.cat([F.normalize(text, dim=-1), F.normalize(collaborative, dim=-1)], dim=-1)
