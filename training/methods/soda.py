"""SODA: distribution-level supervision as a plug-in objective over any semantic-ID backbone.

The item side is the quantizer's per-level soft code distribution, the user side the decoder's
per-level distribution; the score is ``-sum_l KL`` and the loss BPR over it (METHODS.md). The
objective needs the quantizer inside training (``joint.enabled``), with frozen codes over TIGER or
trainable ones over DIGER.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ...modeling.configuration_sid_t5 import NUM_SPECIAL_TOKENS
from ..errors import RecipeError
from ..objectives import Objective, objective_settings, register_objective
from ..registry import Method, register_method

if TYPE_CHECKING:
    from ..recipe import Recipe


KL_DIRECTIONS = ("item_to_user", "user_to_item")
NEGATIVE_SOURCES = ("in_batch", "sampled", "both")


def predicted_code_log_probs(logits: torch.Tensor, num_levels: int, codebook_size: int) -> torch.Tensor:
    """(B, L, K) the decoder's log-distribution over level l's code tokens at step l (teacher-forced).

    The softmax is taken within each level's block of the vocabulary: SODA compares distributions
    over one codebook, not over the whole vocabulary.
    """
    blocks = [
        logits[:, level, NUM_SPECIAL_TOKENS + level * codebook_size : NUM_SPECIAL_TOKENS + (level + 1) * codebook_size]
        for level in range(num_levels)
    ]
    return torch.stack(blocks, dim=1).float().log_softmax(dim=-1)


def distribution_scores(item_log_probs: torch.Tensor, user_log_probs: torch.Tensor, direction: str) -> torch.Tensor:
    """SODA's score ``-sum_l KL`` between items' and users' per-level code distributions, all pairs.

    Args:
        item_log_probs: (I, L, K) log p_l(k | item).
        user_log_probs: (U, L, K) log q_l(k | user).
        direction: ``"item_to_user"`` = KL(p_item || q_user) (the default), ``"user_to_item"`` = KL(q || p).
    Returns:
        (U, I) scores; higher means the user's predicted distribution is closer to the item's.
    """
    if direction == "item_to_user":
        item_probs = item_log_probs.exp()
        self_term = (item_probs * item_log_probs).sum(dim=(1, 2))  # (I,)
        cross = torch.einsum("ilk,ulk->ui", item_probs, user_log_probs)
        return cross - self_term[None, :]
    user_probs = user_log_probs.exp()
    self_term = (user_probs * user_log_probs).sum(dim=(1, 2))  # (U,)
    cross = torch.einsum("ulk,ilk->ui", user_probs, item_log_probs)
    return cross - self_term[:, None]


def paired_scores(item_log_probs: torch.Tensor, user_log_probs: torch.Tensor, direction: str) -> torch.Tensor:
    """The same score for aligned pairs: (..., L, K) against broadcastable (..., L, K) -> (...)."""
    if direction == "item_to_user":
        kl = item_log_probs.exp() * (item_log_probs - user_log_probs)
    else:
        kl = user_log_probs.exp() * (user_log_probs - item_log_probs)
    return -kl.sum(dim=(-2, -1))


@register_objective
class SODAObjective(Objective):
    """SODA: BPR over distribution-level scores, ``-log sigmoid(s(u, i+) - s(u, i-))``, ``s = -sum_l KL``.

    The item side is the quantizer's soft code distribution ``softmax(logits / temperature)``
    (differentiable into the codebooks and encoder when the tokenizer trains); the user side is the
    decoder's per-level distribution teacher-forced on the positive's codes. Negatives are the
    other rows' targets (``in_batch``; a row never counts its own item), catalogue items the
    collator samples (``sampled``, ``training.num_negatives``), or ``both``. The loss is the mean
    over every (user, negative) pair. The paper's text is not available (METHODS.md); each of these
    choices is an option, defaults documented in the README.
    """

    name = "soda"

    def __init__(
        self,
        weight: float = 1.0,
        temperature: float = 1.0,
        direction: str = "item_to_user",
        negatives: str = "in_batch",
    ):
        super().__init__(weight)
        if direction not in KL_DIRECTIONS or negatives not in NEGATIVE_SOURCES or temperature <= 0:
            raise ValueError(
                f"soda options: direction in {KL_DIRECTIONS}, negatives in {NEGATIVE_SOURCES}, temperature > 0; "
                f"got direction={direction!r}, negatives={negatives!r}, temperature={temperature}"
            )
        self.temperature, self.direction, self.negatives = float(temperature), direction, negatives

    def __call__(self, model, inputs, outputs):
        if getattr(outputs, "target_code_logits", None) is None:
            raise ValueError(
                "objective 'soda' needs the items' code distributions from the quantizer: set `joint: {enabled: true}` "
                "(with `trainable: false` and `uncertainty_decay: none` for TIGER's frozen codes)"
            )
        targets = inputs["target_items"]
        item_log_probs = (outputs.target_code_logits / self.temperature).log_softmax(dim=-1)
        levels, size = item_log_probs.shape[1:]
        user_log_probs = predicted_code_log_probs(outputs.logits, levels, size)
        positive = paired_scores(item_log_probs, user_log_probs, self.direction)  # (B,)
        margins, masks = [], []
        if self.negatives in ("in_batch", "both"):
            scores = distribution_scores(item_log_probs, user_log_probs, self.direction)  # (B, B)
            margins.append(positive[:, None] - scores)
            masks.append(targets[:, None] != targets[None, :])
        if self.negatives in ("sampled", "both"):
            sampled = outputs.negative_code_logits
            if sampled is None or sampled.size(1) == 0:
                raise ValueError("soda negatives='sampled' needs training.num_negatives > 0 (catalogue items per row)")
            sampled_log_probs = (sampled / self.temperature).log_softmax(dim=-1)  # (B, N, L, K)
            scores = paired_scores(sampled_log_probs, user_log_probs[:, None], self.direction)  # (B, N)
            margins.append(positive[:, None] - scores)
            masks.append(torch.ones_like(scores, dtype=torch.bool))
        margin, mask = torch.cat(margins, dim=1), torch.cat(masks, dim=1)
        if not mask.any():
            return positive.sum() * 0.0, {}
        loss = F.softplus(-margin[mask]).mean()  # -log sigmoid(margin)
        return loss, {"soda/pair_accuracy": (margin[mask] > 0).float().mean().detach()}


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """SODA reads the quantizer's item distributions, and sampled negatives need the collator to draw them."""
    if "soda" in objectives and not recipe.joint.enabled:
        raise RecipeError(
            "objective `soda` compares the quantizer's item distributions with the decoder's: set joint.enabled: true "
            "(for TIGER's frozen codes also `joint.trainable: false` and `joint.uncertainty_decay: none`)"
        )
    soda = objectives.get("soda")
    if soda is not None and soda.negatives != "in_batch" and recipe.training.num_negatives < 1:
        raise RecipeError(f"soda negatives={soda.negatives!r} samples catalogue items: set training.num_negatives >= 1")


def card_settings(recipe: dict) -> dict | None:
    """The SODA objective's options (defaults filled in) for the model card, or None when the run does not use it."""
    return objective_settings((recipe.get("training") or {}).get("objectives"), "soda")


METHOD = register_method(
    Method(
        name="soda",
        check=check_recipe,
        # a plug-in over any semantic-ID model: ``tiger+soda``, ``diger-...+soda``
        name_suffix=lambda recipe: "+soda" if "soda" in (recipe.training.objectives or {}) else "",
        card_settings=card_settings,
    )
)
