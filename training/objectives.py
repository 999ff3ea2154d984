"""The objectives registry: what ``SIDTrainer.compute_loss`` adds up, by recipe name.

Each objective is a small callable ``(model, inputs, outputs) -> (loss, figures)`` with a weight; a
recipe names the ones it wants (``objectives: {ce: 1.0, soda: 0.1}``). A method's module registers
its own with :func:`register_objective`; this module imports no method, so method modules can
import it without closing an import cycle. Importing ``sidrec.training.methods`` fills the registry
with every method that ships (``build_objectives`` is re-exported there).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


class Objective:
    """Base class: ``__call__`` returns a scalar loss and a dict of figures to log.

    Figures are detached tensors (or numbers): the trainer averages them at logging steps, so an
    objective never forces a device-to-host copy per step.
    """

    name = "objective"

    def __init__(self, weight: float = 1.0, **options: Any):
        if options:
            raise ValueError(f"objective {self.name!r} takes no options {sorted(options)}")
        try:
            self.weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(
                f"objective {self.name!r} in training.objectives: the weight must be a number, got {weight!r}"
            ) from None

    def __call__(self, model, inputs: dict[str, torch.Tensor], outputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class CrossEntropyObjective(Objective):
    """Next-semantic-ID cross-entropy under teacher forcing (TIGER): the model's own loss on the labels.

    With a joint model (DIGER) this is the loss as the uncertainty-decay strategy optimises it (SDUD
    re-weights it); the plain cross-entropy is logged beside it as ``recommendation_ce``.
    """

    name = "ce"

    def __call__(self, model, inputs, outputs):
        plain = getattr(outputs, "recommendation_loss", None)
        return outputs.loss, ({} if plain is None else {"recommendation_ce": plain.detach()})


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available to recipes under ``cls.name``.

    Re-registering the same class is a no-op (a module imported twice); another class under a taken
    name is an error, so two methods never silently share a recipe key.
    """
    existing = OBJECTIVES.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"objective name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    OBJECTIVES[cls.name] = cls
    return cls


register_objective(CrossEntropyObjective)


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
        try:
            objectives[name] = OBJECTIVES[name](**options)
        except TypeError as error:  # a misspelt or unknown option: name the objective and what it takes
            raise ValueError(f"objective {name!r} in training.objectives: {error}") from error
    return objectives


def objective_settings(objectives: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """Objective ``name``'s options as a run used them: the recipe's values over the class's own defaults.

    What a model card states, read from the objective's signature so that the card cannot go on naming a
    default the code no longer has. None when the recipe's ``objectives`` mapping does not name it.
    """
    if not objectives or name not in objectives:
        return None
    options = objectives[name] if isinstance(objectives[name], dict) else {"weight": objectives[name]}
    parameters = inspect.signature(OBJECTIVES[name].__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {**defaults, **options}
