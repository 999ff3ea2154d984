"""Training objectives that ``SIDTrainer.compute_loss`` adds up.

Each objective is a small callable ``(model, inputs, outputs) -> (loss, figures)`` with a weight;
a recipe names the ones it wants (``objectives: {ce: 1.0}``). Methods such as SODA or DMRec add an
entry to :data:`OBJECTIVES` instead of writing another trainer.
"""

from __future__ import annotations

from typing import Any

import torch


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


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (CrossEntropyObjective, QuantizerObjective)}


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
