"""Collaborative item embeddings: the item table of a trained SASRec, aligned to a catalogue.

LETTER's collaborative regulariser and ETEGRec's tokenizer read what a sequential model learned
about each item from the interactions alone. sidrec takes it from a finished SASRec run: one named
by ``embeddings.collaborative_run`` (``python train.py --config configs/<data>-sasrec.yaml``), or one
it trains itself from ``embeddings.collaborative_recipe`` on the recipe's own data, cached like the
text embeddings (``recipe.collaborative_recipe`` names the run, ``pipeline.ensure_collaborative_run``
trains it). The run's item order is matched to the catalogue
by raw item id, so a SASRec trained on the same data with other filters still lines up, and an item
it never saw is a clear error.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .data.item_table import read_item_table
from .errors import RecipeError

EMBEDDING_SOURCES = ("text", "collaborative", "text+collaborative")


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
