"""ETEGRec (arXiv 2409.05546): tokenizer and recommender coupled by two soft alignment losses.

ETEGRec trains an RQ-VAE over collaborative item embeddings (a SASRec's item table) together with a
T5 recommender that reads and predicts the per-epoch code table, detached. The two meet only through
two losses (METHODS.md, "ETEGRec and LETTER"):

- **sequence-item alignment** (``sia``): the encoder's mean-pooled state, projected into the
  tokenizer's latent space, is quantised level by level like an item; its per-level code distribution
  ``softmax(-d)`` should match the target item's (symmetric KL). ETEGRec's released code takes
  ``softmax(+d)``, which rewards the *farthest* codes; the sign here is the paper's.
- **preference-semantic alignment** (``psa``): the first decoder state, projected into the item
  embedding space, and the tokenizer's reconstruction of the target item form positive pairs of a
  symmetric in-batch InfoNCE (cosine similarity, temperature 0.07).

Both run on the batch's distinct targets. Everything else ETEGRec needs is DIGER's machinery
(``joint.mode: reference`` for the detached table, ``joint.alternate`` for its cycle of a tokenizer
epoch and a recommender epoch, ``joint.tokenizer_warmup_epochs`` for its recommender-only warm-up,
``embeddings.source: collaborative`` for its input); ``joint.alignment: true`` adds the two
projections to the joint model and the objectives below read what its step returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ...tokenization.modeling_quantizer import SemanticIDQuantizer
from ..errors import RecipeError
from ..objectives import Objective, register_objective
from ..registry import Method, register_method

if TYPE_CHECKING:
    from ..recipe import Recipe


@dataclass
class AlignmentOutput:
    """What one joint step hands the alignment objectives (all rows are the batch's distinct targets).

    Attributes:
        sequence_distances: (U, L, K) squared distances of the projected, pooled encoder state's
            residuals to each level's codes.
        item_distances: (U, L, K) the same for each target item's latent, on its own codes' residuals.
        preference: (U, D) the first decoder state projected into the item-embedding space.
        reconstruction: (U, D) the tokenizer's reconstruction of each target's embedding.
    """

    sequence_distances: torch.Tensor
    item_distances: torch.Tensor
    preference: torch.Tensor
    reconstruction: torch.Tensor


def residual_distances(
    quantizer: SemanticIDQuantizer, latent: torch.Tensor, codes: torch.LongTensor | None = None
) -> torch.Tensor:
    """Squared distances (B, L, K) of ``latent``'s residual at each level to that level's codes.

    The residual after a level subtracts the code taken there: ``codes`` (B, L) where given (an item's
    assigned codes), the nearest code otherwise (a sequence state, which has no code of its own).
    """
    residual, levels = latent, []
    for level in range(quantizer.config.num_levels):
        distances = quantizer.distances(residual, level)
        levels.append(distances)
        chosen = distances.argmin(dim=-1) if codes is None else codes[:, level]
        residual = residual - quantizer.codebooks[level][chosen]
    return torch.stack(levels, dim=1)


def symmetric_code_kl(first: torch.Tensor, second: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of the code distributions ``p = softmax(-first / t)``, ``q = softmax(-second / t)``.

    ``first`` and ``second`` (n, L, K) are squared distances; the KL is summed over the K codes and
    averaged over the n rows and the L levels. Zero when the two rows see the codes alike.
    """
    log_p = F.log_softmax(-first / temperature, dim=-1)
    log_q = F.log_softmax(-second / temperature, dim=-1)
    p, q = log_p.exp(), log_q.exp()
    return ((p * (log_p - log_q)).sum(-1) + (q * (log_q - log_p)).sum(-1)).mean()


def symmetric_info_nce(first: torch.Tensor, second: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """In-batch InfoNCE both ways between rows of ``first`` and ``second`` (n, D), cosine similarity.

    Row ``i`` of one side is the positive of row ``i`` of the other, every other row a negative; the
    two directions' cross-entropies are added, as ETEGRec adds them.
    """
    similarity = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).t() / temperature
    labels = torch.arange(len(first), device=first.device)
    return F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.t(), labels)


def distinct_rows(items: torch.LongTensor) -> torch.LongTensor:
    """Indices of the first occurrence of each distinct value of ``items`` (n,), in ascending item order.

    Two users with the same target would otherwise be each other's negatives in the InfoNCE.
    """
    values, inverse = torch.unique(items, return_inverse=True)
    positions = torch.arange(len(items), device=items.device)
    first = torch.full((len(values),), len(items), device=items.device, dtype=positions.dtype)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")


class _AlignmentObjective(Objective):
    """One alignment loss: the model must hold ETEGRec's projections; warm-up steps contribute zero.

    The trainer logs each objective's value as ``loss_<name>``, so these return no figures of their own.
    """

    default_temperature = 1.0

    def __init__(self, weight: float = 1.0, temperature: float | None = None):
        super().__init__(weight)
        self.temperature = float(self.default_temperature if temperature is None else temperature)

    def loss(self, alignment: AlignmentOutput) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model, inputs, outputs):
        if getattr(getattr(model, "module", model), "sequence_adapter", None) is None:  # unwrap DDP
            raise ValueError(
                f"objective {self.name!r} aligns the recommender with its tokenizer: set `joint: {{enabled: true, "
                "mode: reference, alignment: true}` in the recipe, or drop it from training.objectives"
            )
        if outputs.alignment is None:  # the tokenizer warm-up: ETEGRec couples the two only afterwards
            return outputs.loss.new_zeros(()), {}
        return self.loss(outputs.alignment), {}


@register_objective
class SequenceItemAlignmentObjective(_AlignmentObjective):
    """ETEGRec's ``L_SIA``: the sequence state's code distribution matches the target item's (symmetric KL)."""

    name = "sia"

    def loss(self, alignment: AlignmentOutput) -> torch.Tensor:
        return symmetric_code_kl(alignment.sequence_distances, alignment.item_distances, self.temperature)


@register_objective
class PreferenceSemanticAlignmentObjective(_AlignmentObjective):
    """ETEGRec's ``L_PSA``: the first decoder state and the target's reconstruction, in-batch InfoNCE both ways."""

    name = "psa"
    default_temperature = 0.07

    def loss(self, alignment: AlignmentOutput) -> torch.Tensor:
        return symmetric_info_nce(alignment.preference, alignment.reconstruction, self.temperature)


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """ETEGRec's rules: the alignment objectives need ``joint.alignment``, which needs the reference mode."""
    joint = recipe.joint
    named = sorted({"sia", "psa"} & set(objectives))
    if named and not (joint.enabled and joint.alignment):
        raise RecipeError(
            f"objective(s) {named} align the recommender with its tokenizer: set `joint: {{enabled: true, mode: "
            "reference, alignment: true}`, or drop them from training.objectives"
        )
    if joint.enabled and joint.alignment and joint.mode != "reference":
        raise RecipeError(
            f"joint.alignment (ETEGRec) trains the recommender on the detached code table: set joint.mode: reference "
            f"(got {joint.mode!r})"
        )


# ETEGRec's own input is collaborative (``etegrec``); on text codes it is ``etegrec-text``.
ETEGREC_SUFFIXES = {"text": "-text", "collaborative": "", "text+collaborative": "-textcf"}


def run_name(recipe: Recipe) -> str | None:
    """``etegrec`` when the joint model aligns the recommender with its tokenizer (``joint.alignment``)."""
    joint = recipe.joint
    return "etegrec" + ETEGREC_SUFFIXES[recipe.embeddings.source] if joint.enabled and joint.alignment else None


# ETEGRec's section is DIGER's ``joint`` (the joint model it trains); it adds the alignment objectives and its name.
METHOD = register_method(Method(name="etegrec", check=check_recipe, run_name=run_name))

__all__ = [
    "METHOD",
    "check_recipe",
    "AlignmentOutput",
    "PreferenceSemanticAlignmentObjective",
    "SequenceItemAlignmentObjective",
    "distinct_rows",
    "residual_distances",
    "symmetric_code_kl",
    "symmetric_info_nce",
]
