"""One module per method; importing this package registers every method's objectives.

- ``diger`` (a package): joint training of the tokenizer with the recommender;
- ``soda``: the distribution-level BPR objective;
- ``dmrec``: distribution matching, over DMRec-T5 or the paper's Mult-VAE;
- ``sasrec``: the ID-based floor (no semantic IDs), full-softmax or one-negative BCE;
- ``letter``: LETTER's collaborative and diversity regularisers on the RQ-VAE fit;
- ``etegrec``: ETEGRec's two alignment losses between the recommender and its tokenizer.

TIGER is the base every method builds on (static RQ-VAE codes, next-SID cross-entropy) and needs
no module of its own. A new method is one module here (its objectives registered with
``register_objective``, its recipe section, a ``check_recipe(recipe, objectives)``), one import
below, and one recipe in ``configs/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..objectives import OBJECTIVES, Objective, build_objectives, register_objective
from . import diger, dmrec, etegrec, letter, sasrec, soda

if TYPE_CHECKING:
    from ..recipe import Recipe

METHOD_MODULES = (sasrec, dmrec, diger, etegrec, soda, letter)  # the order their rules are checked in


def check_method_settings(recipe: Recipe) -> dict[str, Objective]:
    """Every method's recipe rules, before any work; returns the recipe's objectives."""
    objectives = build_objectives(recipe.training.objectives)
    for module in METHOD_MODULES:
        module.check_recipe(recipe, objectives)
    return objectives


def method_name(recipe: Recipe) -> str:
    """The short lowercase name of what a recipe trains, e.g. ``tiger``, ``tiger+soda``, ``letter``, ``tiger-cf``.

    It is read from the recipe's sections, never from flags set later, so a run's model card, its
    ``metrics.json`` and the results harness all name a run the same way. Frozen codes inside a joint
    model (``joint.trainable: false`` without noise) are TIGER's codes, so such a run is ``tiger``.
    """
    objectives = recipe.training.objectives or {}
    if recipe.task == "collaborative":
        options = objectives.get("dmrec") or {}
        strategy = options.get("strategy", "mddm") if isinstance(options, dict) else "mddm"
        return "mult-vae" if strategy == "none" else f"mult-vae-{strategy}"
    if recipe.sasrec.enabled:
        return "sasrec" if recipe.sasrec.loss_type == "ce" else f"sasrec-{recipe.sasrec.loss_type}"
    if recipe.dmrec.enabled:
        name = "dmrec-t5"
    elif recipe.joint.enabled and recipe.joint.alignment:
        name = "etegrec"  # its own input is collaborative: ``etegrec``; on text codes ``etegrec-text``
    elif recipe.joint.enabled and (recipe.joint.trainable or recipe.joint.uncertainty_decay != "none"):
        mode = recipe.joint.mode.replace("_", "-")
        name = f"diger-{mode}-{recipe.joint.uncertainty_decay}"
    elif recipe.letter.enabled:
        name = "letter"  # TIGER's recommender on LETTER's codes
    else:
        name = "tiger"
    # Codes of collaborative (SASRec) embeddings, alone or beside the text: ``tiger-cf``, ``letter-textcf``.
    suffixes = {"text": "", "collaborative": "-cf", "text+collaborative": "-textcf"}
    if name == "etegrec":
        suffixes = {"text": "-text", "collaborative": "", "text+collaborative": "-textcf"}
    name += suffixes[recipe.embeddings.source]
    return name + ("+soda" if "soda" in objectives else "")


__all__ = [
    "METHOD_MODULES",
    "OBJECTIVES",
    "Objective",
    "build_objectives",
    "check_method_settings",
    "diger",
    "dmrec",
    "etegrec",
    "method_name",
    "register_objective",
    "sasrec",
    "soda",
]
