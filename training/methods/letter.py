"""LETTER (Wang et al., CIKM 2024): semantic IDs that also carry the collaborative signal.

LETTER fits the RQ-VAE on the items' text with two regularisers beside its own loss (METHODS.md,
"ETEGRec and LETTER"), and balances the last level's codes with Sinkhorn:

- **collaborative**: in-batch InfoNCE between an item's quantised vector and its collaborative
  embedding (a trained SASRec's item table), dot-product scores, the batch's other items as
  negatives (weight 0.01 in the paper). The SASRec table has its own width, so a learned linear map
  takes it to the latent width first (the paper's dimensions are not known here; reconstruction).
- **diversity**: each level's codebook is clustered into groups (k-means, 10 groups); an item's
  chosen code vector is pulled towards another code of its group, against all the level's codes
  (cross-entropy over codebook similarities; weight 1e-4).

A ``letter:`` recipe section turns it on over any backbone (it only changes how the codes are
fitted). The collaborative embeddings come from ``embeddings.collaborative_run``, a finished
SASRec run (``training/collaborative.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...tokenization.kmeans import kmeans
from ..errors import RecipeError
from ..recipe import refuse_keep_shards, refuse_with_codes_from
from ..registry import SOURCE_SUFFIXES, Method, register_method

if TYPE_CHECKING:
    from ...tokenization.modeling_quantizer import QuantizerOutput, SemanticIDQuantizer
    from ..objectives import Objective
    from ..recipe import Recipe


@dataclass
class LetterRecipe:
    """LETTER's tokenizer regularisers (``enabled: true``); defaults are the paper's."""

    enabled: bool = False
    collaborative_weight: float = 0.01
    diversity_weight: float = 1e-4
    diversity_groups: int = 10
    sinkhorn_epsilon: float = 0.003  # Sinkhorn-balanced codes on the last level; 0 = nearest codes


def collaborative_loss(quantized: torch.Tensor, collaborative: torch.Tensor) -> torch.Tensor:
    """In-batch InfoNCE: item ``i``'s quantised vector (B, d) should score its own collaborative vector (B, d)
    above the other items' (dot products, no temperature, as in LETTER's code)."""
    scores = quantized @ collaborative.t()
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


def code_groups(codebook: torch.Tensor, num_groups: int, generator: torch.Generator) -> torch.LongTensor:
    """The group (K,) of each code of one level: k-means of the codebook vectors (no gradient)."""
    with torch.no_grad():
        centers = kmeans(codebook, min(num_groups, codebook.size(0)), iterations=10, generator=generator)
        return torch.cdist(codebook, centers).argmin(dim=1)


def group_positives(codes: torch.LongTensor, groups: torch.LongTensor, generator: torch.Generator) -> torch.LongTensor:
    """For each chosen code (B,), another code of its group drawn uniformly (the code itself when alone)."""
    same = groups[codes][:, None] == groups[None, :]  # (B, K): codes of the same group
    same[torch.arange(len(codes)), codes] = False
    alone = ~same.any(dim=1)
    same[alone, codes[alone]] = True
    weights = same.double()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def diversity_loss(chosen: torch.Tensor, codebook: torch.Tensor, positives: torch.LongTensor) -> torch.Tensor:
    """Cross-entropy of each chosen code vector (B, d)'s similarities to the codebook (K, d), target ``positives``."""
    return F.cross_entropy(chosen @ codebook.t(), positives)


class LetterRegularizer(nn.Module):
    """The two LETTER losses for the quantizer's fit loop; holds the collaborative projection.

    Call :meth:`new_epoch` before each epoch (re-clusters the codebooks) and the module with the
    batch's quantizer output and item indices; it returns the weighted sum and the two terms.
    """

    def __init__(self, settings: LetterRecipe, collaborative: torch.Tensor, latent_dim: int, seed: int = 0):
        super().__init__()
        self.settings = settings
        self.collaborative = collaborative.detach().float()
        self.projection = nn.Linear(collaborative.size(1), latent_dim)
        self.generator = torch.Generator().manual_seed(seed)
        self.groups: list[torch.LongTensor] = []

    def new_epoch(self, quantizer: SemanticIDQuantizer) -> None:
        self.groups = [
            code_groups(quantizer.codebooks[level].detach(), self.settings.diversity_groups, self.generator)
            for level in range(quantizer.config.num_levels)
        ]

    def forward(self, quantizer: SemanticIDQuantizer, output: QuantizerOutput, items: torch.LongTensor):
        collaborative = collaborative_loss(output.quantized, self.projection(self.collaborative[items]))
        diversity = output.quantized.new_zeros(())
        for level, groups in enumerate(self.groups):
            codebook = quantizer.codebooks[level]
            positives = group_positives(output.codes[:, level], groups, self.generator)
            diversity = diversity + diversity_loss(codebook[output.codes[:, level]], codebook, positives)
        diversity = diversity / max(len(self.groups), 1)
        total = self.settings.collaborative_weight * collaborative + self.settings.diversity_weight * diversity
        return total, {"letter/collaborative": collaborative.detach(), "letter/diversity": diversity.detach()}


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """LETTER's rules: it needs the collaborative embeddings of a SASRec run; weights are not negative."""
    letter = recipe.letter
    if not letter.enabled:
        return
    if recipe.quantizer.codes_from:
        refuse_with_codes_from("letter.enabled (LETTER fits its own codes)")
    if recipe.embeddings.keep_shards:
        refuse_keep_shards("letter.enabled")
    if min(letter.collaborative_weight, letter.diversity_weight, letter.sinkhorn_epsilon) < 0:
        raise RecipeError("letter weights and sinkhorn_epsilon must be >= 0 (0 switches a term off)")
    if letter.diversity_groups < 1:
        raise RecipeError(f"letter.diversity_groups must be at least 1, got {letter.diversity_groups}")
    sasrec = recipe.embeddings.collaborative_run or recipe.embeddings.collaborative_recipe
    if letter.collaborative_weight > 0 and not sasrec:
        raise RecipeError(
            "letter's collaborative loss needs a trained SASRec's item table: set embeddings.collaborative_recipe "
            "to a SASRec recipe (e.g. configs/scientific-sasrec.yaml; trained once and cached), or "
            "embeddings.collaborative_run to a finished SASRec run, or set letter.collaborative_weight: 0"
        )
    joint = recipe.joint
    if joint.enabled and (joint.trainable or joint.uncertainty_decay != "none"):  # frozen codes (SODA's route) are fine
        raise RecipeError(
            "letter fits the codes before training; it does not combine with DIGER's trained codes: set "
            "joint.trainable: false and joint.uncertainty_decay: none (the frozen codes SODA reads), or drop joint"
        )


def run_name(recipe: Recipe) -> str | None:
    """``letter`` (TIGER's recommender on LETTER's codes), with the codes' source suffix (``letter-textcf``)."""
    return "letter" + SOURCE_SUFFIXES[recipe.embeddings.source] if recipe.letter.enabled else None


def code_fit(recipe: Recipe, collaborative: torch.Tensor | None) -> dict | None:
    """LETTER's losses for the RQ-VAE fit, with the last level balanced by Sinkhorn (its targets: the SASRec table)."""
    if not recipe.letter.enabled:
        return None
    regularizer = LetterRegularizer(recipe.letter, collaborative, recipe.quantizer.latent_dim, seed=recipe.seed)
    if recipe.letter.sinkhorn_epsilon > 0:
        return {"regularizer": regularizer, "sinkhorn_epsilon": recipe.letter.sinkhorn_epsilon, "sinkhorn_levels": [-1]}
    return {"regularizer": regularizer}


METHOD = register_method(
    Method(
        name="letter",
        sections={"letter": LetterRecipe},
        check=check_recipe,
        run_name=run_name,
        needs_collaborative=lambda recipe: recipe.letter.enabled,
        code_fit=code_fit,
    )
)
