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
    """Next-semantic-ID cross-entropy under teacher forcing (TIGER): T5's own loss on the labels."""

    name = "ce"

    def __call__(self, model, inputs, outputs):
        return outputs.loss, {}


OBJECTIVES: dict[str, type[Objective]] = {CrossEntropyObjective.name: CrossEntropyObjective}


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
