"""Training objectives that ``SIDTrainer.compute_loss`` adds up.

Each objective is a small callable ``(model, inputs, outputs) -> (loss, figures)`` with a weight;
a recipe names the ones it wants (``objectives: {ce: 1.0}``). Methods such as SODA or DMRec add an
entry to :data:`OBJECTIVES` instead of writing another trainer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..modeling.configuration_sid_t5 import NUM_SPECIAL_TOKENS
from ..modeling.gaussian_matching import MATCHING_STRATEGIES, matching_loss


class Objective:
    """Base class: ``__call__`` returns a scalar loss and a dict of figures to log."""

    name = "objective"

    def __init__(self, weight: float = 1.0, **options: Any):
        if options:
            raise ValueError(f"objective {self.name!r} takes no options {sorted(options)}")
        self.weight = float(weight)

    def __call__(self, model, inputs: dict[str, torch.Tensor], outputs) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class CrossEntropyObjective(Objective):
    """Next-semantic-ID cross-entropy under teacher forcing (TIGER): the model's own loss on the labels.

    With a joint model (DIGER) this is the loss as the uncertainty-decay strategy optimises it (SDUD
    re-weights it); the plain cross-entropy is logged beside it as ``recommendation_ce``.
    """

    name = "ce"

    def __call__(self, model, inputs, outputs):
        plain = getattr(outputs, "recommendation_loss", None)
        return outputs.loss, ({} if plain is None else {"recommendation_ce": plain.item()})


def code_balance_loss(code_probs: torch.Tensor) -> torch.Tensor:
    """DIGER's balance term: ``sum_k |mean_batch p_k - 1/K|`` per level, averaged over levels.

    ``code_probs`` (n, L, K): soft code distributions of a batch's items. Zero when the batch uses
    every code equally on average; at most ``2 (1 - 1/K)`` when all mass sits on one code.
    """
    size = code_probs.size(-1)
    return (code_probs.mean(dim=0) - 1.0 / size).abs().sum(dim=-1).mean()


class QuantizerObjective(Objective):
    """The RQ-VAE's own loss (reconstruction + quantisation) on the batch's items, in joint training.

    Keeps the codebooks a good quantiser of the content while the recommendation loss moves them.
    ``balance`` > 0 adds :func:`code_balance_loss` with that weight (DIGER sets 0.1 where used).
    """

    name = "quantizer"

    def __init__(self, weight: float = 1.0, balance: float = 0.0):
        super().__init__(weight)
        self.balance = float(balance)

    def __call__(self, model, inputs, outputs):
        if getattr(outputs, "quantizer_loss", None) is None:
            raise ValueError(
                "objective 'quantizer' needs the tokenizer inside training: set `joint: {enabled: true}` in the "
                "recipe, or drop `quantizer` from training.objectives"
            )
        loss, figures = outputs.quantizer_loss, {}
        if self.balance:
            balance = code_balance_loss(outputs.code_probs)
            loss = loss + self.balance * balance
            figures["code_balance"] = balance.item()
        return loss, figures


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
        return loss, {"soda/pair_accuracy": (margin[mask] > 0).float().mean().item()}


class DMRecObjective(Objective):
    """DMRec's distribution matching between ``q(z | x)`` and the meta-network's ``p(z | s)``.

    ``strategy`` is ``mddm`` (the default), ``godm``, ``cpdm`` or ``none`` (the base VAE's
    ``beta * KL(q || N(0, I))``), with ``beta`` the strategy's weight; the formulas are in
    :mod:`sidrec.modeling.gaussian_matching`. Works with any model whose output carries
    ``posterior``, ``collaborative`` and ``language`` Gaussians (DMRec-T5, Mult-VAE).
    """

    name = "dmrec"

    def __init__(self, weight: float = 1.0, strategy: str = "mddm", beta: float = 0.5):
        super().__init__(weight)
        if strategy not in MATCHING_STRATEGIES:
            raise ValueError(f"dmrec strategy must be one of {MATCHING_STRATEGIES}, got {strategy!r}")
        if not 0.0 <= float(beta) <= (1.0 if strategy == "mddm" else float("inf")):
            raise ValueError(f"dmrec beta must be >= 0 (and <= 1 for mddm), got {beta}")
        self.strategy, self.beta = strategy, float(beta)

    def __call__(self, model, inputs, outputs):
        if getattr(outputs, "posterior", None) is None:
            raise ValueError(
                "objective 'dmrec' needs a model with Gaussian heads: use a DMRec model "
                "(recipe `dmrec: {enabled: true}` for SID-T5, or `task: collaborative` for Mult-VAE)"
            )
        if self.strategy != "none" and outputs.language is None:
            raise ValueError(
                f"dmrec strategy {self.strategy!r} needs the language-space meta-network; the model was built "
                "without text embeddings (set the strategy to `none` for the base model)"
            )
        loss, terms = matching_loss(
            self.strategy, outputs.posterior, outputs.language, self.beta, collaborative=outputs.collaborative
        )
        return loss, {f"dmrec/{name}": value.item() for name, value in terms.items()}


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (CrossEntropyObjective, QuantizerObjective, SODAObjective, DMRecObjective)
}


def build_objectives(spec: dict[str, Any]) -> dict[str, Objective]:
    """Objectives from a recipe's ``objectives`` mapping: ``{name: weight}`` or ``{name: {weight, ...}}``."""
    if not spec:
        raise ValueError(
            f"the recipe names no objectives; add e.g. `objectives: {{ce: 1.0}}` (known: {sorted(OBJECTIVES)})"
        )
    objectives = {}
    for name, options in spec.items():
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r} in the recipe; known objectives: {sorted(OBJECTIVES)}")
        options = dict(options) if isinstance(options, dict) else {"weight": options}
        objectives[name] = OBJECTIVES[name](**options)
    return objectives
