"""SASRec, the classical floor: item-id embeddings and a causal Transformer, full-softmax cross-entropy.

Every generative number stands next to it: on Beauty, public SASRec re-implementations trained with
full cross-entropy reach 0.085-0.092 Recall@10, above TIGER's 0.065. The ``bce`` loss is the
paper's one-negative variant (the TIGER paper's SASRec row). It trains on each user's full
training sequence (the last training row, every position supervised), with the same leave-one-out
validation and test users as the semantic-ID models and the same full-ranking metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...modeling.configuration_sasrec import LOSS_TYPES, SASRecConfig
from ...modeling.modeling_sasrec import SASRecForSequentialRecommendation
from ..errors import RecipeError
from ..objectives import Objective

if TYPE_CHECKING:
    from ..recipe import Recipe


@dataclass
class SASRecRecipe:
    """``sasrec: {enabled: true}`` trains SASRec instead of a semantic-ID model (no codes are built).

    Defaults are the settings measured on Scientific (issue "Collaborative semantic IDs"): 2 blocks of
    64-d with one head, dropout 0.3. ``max_seq_length`` null takes ``data.max_history``.
    """

    enabled: bool = False
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 1
    dropout: float = 0.3
    loss_type: str = "ce"  # ce: full softmax; bce: one sampled negative per position (the paper)
    max_seq_length: int | None = None


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """SASRec has its own loss (``ce`` reads it) and no semantic IDs to combine with other methods."""
    section = recipe.sasrec
    if not section.enabled:
        return
    if section.loss_type not in LOSS_TYPES:
        raise RecipeError(f"sasrec.loss_type must be one of {LOSS_TYPES}, got {section.loss_type!r}")
    if set(objectives) != {"ce"}:
        raise RecipeError(
            f"sasrec.enabled trains SASRec on its own loss: set training.objectives to {{ce: 1.0}} "
            f"(got {sorted(objectives)}); the semantic-ID objectives need a semantic-ID model"
        )
    if recipe.joint.enabled or recipe.dmrec.enabled or recipe.finetune.from_model or recipe.task != "sequential":
        raise RecipeError(
            "sasrec.enabled is a model of its own: it cannot be combined with joint.enabled, dmrec.enabled, "
            "finetune.from_model or task: collaborative"
        )
    if section.hidden_size % section.num_heads:
        raise RecipeError(
            f"sasrec.hidden_size {section.hidden_size} must be divisible by num_heads {section.num_heads}"
        )


def build_sasrec(recipe: Recipe, num_items: int) -> SASRecForSequentialRecommendation:
    """SASRec over ``num_items`` items with the recipe's shape."""
    s = recipe.sasrec
    config = SASRecConfig(
        num_items=num_items,
        max_seq_length=s.max_seq_length or recipe.data.max_history,
        hidden_size=s.hidden_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        dropout=s.dropout,
        loss_type=s.loss_type,
    )
    return SASRecForSequentialRecommendation(config)
