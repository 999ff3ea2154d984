"""DIGER (arXiv 2601.19711): semantic IDs that train with the recommender.

The room holds everything DIGER adds over TIGER:

- ``joint_model``: :class:`JointSIDT5`, SID-T5 holding the quantizer so one ``Trainer`` trains both,
  in two modes: ``reference`` (the released code: detached per-epoch table) and ``end_to_end``
  (the recommendation loss reaches the codes);
- ``uncertainty_decay``: the Gumbel-noise strategies (``none``, ``anneal``, ``frqud``, ``sdud``);
- ``living_codes``: the callback that re-assigns the catalogue's codes after each epoch;
- ``frozen_levels``: the callback that keeps chosen codebook levels fixed (scale-aware updates);
- here: the recipe section (``joint:``), the ``quantizer`` objective with DIGER's balance term,
  the recipe rules, and :func:`build_joint_model`, which the pipeline calls when ``joint.enabled``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ....tokenization.configuration_quantizer import LOGIT_MODES
from ....tokenization.semantic_codes import code_statistics
from ...errors import RecipeError
from ...objectives import Objective, register_objective
from ...recipe import Recipe, known_keys, refuse_keep_shards, refuse_with_codes_from
from ...registry import SOURCE_SUFFIXES, Method, register_method
from ...stages.models import BuiltModel, ModelParts
from .frozen_levels import FrozenCodeLevelsCallback, check_frozen_levels
from .joint_model import CODE_EMBEDDINGS, FROZEN_ENCODER, JOINT_MODES, JointOutput, JointSIDT5
from .living_codes import LivingCodesCallback
from .uncertainty_decay import STRATEGIES, UncertaintyDecay, UncertaintyDecayCallback, build_uncertainty_decay

if TYPE_CHECKING:
    from ....modeling.configuration_sid_t5 import SIDT5Config
    from ....tokenization.tokenization_semantic_id import SemanticIDTokenizer
    from ...fit_quantizer import QuantizerFit


@dataclass
class JointRecipe:
    """DIGER: the tokenizer's quantizer trains with the recommender (``enabled: true``).

    Defaults are DIGER's (METHODS.md): Gumbel ``tau`` 2, tokenizer learning rate 1e-5 beside the
    recommender's, SDUD's sigma at 1e-3, codes re-assigned after every epoch.
    """

    enabled: bool = False
    trainable: bool = True  # False: noisy but frozen codes (no gradient reaches the quantizer)
    uncertainty_decay: str = "frqud"  # none | anneal | frqud | sdud
    decay_options: dict[str, Any] = field(default_factory=dict)  # e.g. {initial: 1.0, decay: 0.9} for anneal
    code_temperature: float = 2.0
    hard_switch_epoch: int | None = 0  # epoch from which inputs are straight-through one-hots; null = never
    code_gradient: str = "raw"  # raw | calibrated: units of the loss's pull on the codes (README, DIGER)
    target_gradient: bool = False  # True: the loss may also move the target's codes (collapses them; README)
    tokenizer_learning_rate: float = 1e-5
    sigma_learning_rate: float = 1e-3
    reassign_codes: bool = True
    # ``end_to_end``: the recommendation loss reaches the codes (the paper's claim); ``reference``: DIGER's
    # released code (detached per-epoch table in and out; the quantizer trains on its own losses).
    mode: str = "end_to_end"
    # The settings below default (null) to the mode's own: reference = DIGER's code, end_to_end = sidrec's path.
    logits: str | None = None  # calibrated | centred (min-max centred batch distances)
    sinkhorn_epsilon: float | None = None  # > 0: noise-free codes are the batch's Sinkhorn-balanced assignment
    sinkhorn_iterations: int = 50
    frozen_encoder: str | None = None  # none | all | all_but_last (reference: all for FrqUD, all but last for SDUD)
    tokenizer_warmup_epochs: int = 0  # the quantizer stays frozen for these first epochs
    code_hysteresis: float = 0.0  # keep an item's code unless a new one is better by more than this (logit units)
    freeze_codes_epoch: int | None = None  # from this epoch on: fixed codes, the recommender alone (ETEGRec's end)
    alternate: bool = False  # ETEGRec's cycle: tokenizer epoch (recommender frozen), then recommender epoch
    # Scale-aware updates: these levels' codebooks never move (the deep ones re-label most items at any step).
    frozen_code_levels: list[int] = field(default_factory=list)
    code_embeddings: str = "table"  # table | codebook: code-token embeddings W_l e_{l,k} + b_{l,k}, tied to the output
    alignment: bool = False  # ETEGRec's projections for its sia/psa objectives (reference mode; methods/etegrec.py)

    def resolved(self) -> dict[str, Any]:
        """The mode-dependent settings with their defaults filled in (what the run actually uses)."""
        reference = self.mode == "reference"
        frozen = "all_but_last" if self.uncertainty_decay == "sdud" else "all"
        return {
            "logits": self.logits or ("centred" if reference else "calibrated"),
            "sinkhorn_epsilon": self.sinkhorn_epsilon if self.sinkhorn_epsilon is not None else (0.003 * reference),
            "frozen_encoder": self.frozen_encoder or (frozen if reference else "none"),
        }


def code_balance_loss(code_probs: torch.Tensor) -> torch.Tensor:
    """DIGER's balance term: ``sum_k |mean_batch p_k - 1/K|`` per level, averaged over levels.

    ``code_probs`` (n, L, K): soft code distributions of a batch's items. Zero when the batch uses
    every code equally on average; at most ``2 (1 - 1/K)`` when all mass sits on one code.
    """
    size = code_probs.size(-1)
    return (code_probs.mean(dim=0) - 1.0 / size).abs().sum(dim=-1).mean()


@register_objective
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
            figures["code_balance"] = balance.detach()
        return loss, figures


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """DIGER's rules: a trainable tokenizer needs the RQ-VAE loss; the strategy and options must exist."""
    joint = recipe.joint
    if joint.enabled and recipe.finetune.from_model:
        raise RecipeError(
            "finetune.from_model keeps the saved model's codes: it cannot be combined with joint.enabled (DIGER)"
        )
    if joint.enabled and recipe.quantizer.codes_from:
        refuse_with_codes_from("joint.enabled (DIGER and SODA train the codes they read)")
    if joint.enabled and recipe.embeddings.keep_shards:
        refuse_keep_shards("joint.enabled (DIGER re-encodes the catalogue every epoch)")
    if joint.enabled and joint.trainable and "quantizer" not in objectives:
        raise RecipeError(
            "joint.enabled with a trainable tokenizer needs the RQ-VAE loss to keep the codebooks a quantiser "
            "of the content: add `quantizer: 1.0` to training.objectives (or set joint.trainable: false)"
        )
    if "quantizer" in objectives and not joint.enabled:
        raise RecipeError("objective `quantizer` trains the tokenizer with the recommender: set `joint.enabled: true`")
    choices = {"mode": (joint.mode, JOINT_MODES), "logits": (joint.logits, (None, *LOGIT_MODES))}
    choices["frozen_encoder"] = (joint.frozen_encoder, (None, *FROZEN_ENCODER))
    choices["code_embeddings"] = (joint.code_embeddings, CODE_EMBEDDINGS)
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise RecipeError(f"joint.{key}={value!r} is not one of {[a for a in allowed if a is not None]}")
    if (joint.sinkhorn_epsilon or 0) < 0 or joint.sinkhorn_iterations < 1 or joint.tokenizer_warmup_epochs < 0:
        raise RecipeError(
            "joint.sinkhorn_epsilon must be >= 0 (0 = nearest codes), joint.sinkhorn_iterations >= 1 and "
            f"joint.tokenizer_warmup_epochs >= 0; got {joint.sinkhorn_epsilon}, {joint.sinkhorn_iterations}, "
            f"{joint.tokenizer_warmup_epochs}"
        )
    if joint.code_hysteresis < 0 or (joint.freeze_codes_epoch is not None and joint.freeze_codes_epoch < 0):
        raise RecipeError(
            f"joint.code_hysteresis must be >= 0 and joint.freeze_codes_epoch >= 0 (or null = never); got "
            f"{joint.code_hysteresis} and {joint.freeze_codes_epoch}"
        )
    try:
        check_frozen_levels(joint.frozen_code_levels, recipe.quantizer.num_levels)
    except ValueError as error:
        raise RecipeError(f"joint.frozen_code_levels={joint.frozen_code_levels}: {error}") from error
    if joint.frozen_code_levels and not joint.trainable:
        raise RecipeError(
            "joint.frozen_code_levels keeps some levels of a training quantizer fixed, but joint.trainable: false "
            "already fixes all of them: drop one of the two"
        )
    if joint.enabled and joint.mode == "reference" and not joint.trainable:
        raise RecipeError("joint.mode: reference trains the codebooks on their own losses: drop joint.trainable: false")
    try:
        build_uncertainty_decay(joint.uncertainty_decay, 1, 2, **joint.decay_options)
    except (TypeError, ValueError) as error:  # unknown strategy, option or value
        message = f"joint.uncertainty_decay={joint.uncertainty_decay!r} with {joint.decay_options}: {error}"
        raise RecipeError(message) from error


def build_joint_model(
    recipe: Recipe,
    config: SIDT5Config,
    fit: QuantizerFit,
    embeddings: torch.Tensor,
    tokenizer: SemanticIDTokenizer,
    learning_rates: dict[str, float],
) -> tuple[JointSIDT5, dict[str, float], list]:
    """The joint recommender, its per-prefix learning rates (tokenizer, sigma) and its callbacks."""
    joint = recipe.joint
    settings = joint.resolved()
    decay = build_uncertainty_decay(
        joint.uncertainty_decay, fit.quantizer.config.num_levels, config.codebook_size, **joint.decay_options
    )
    # The assignment rule lives in the quantizer's config, so the saved tokenizer encodes as training did.
    fit.quantizer.config.logit_mode = settings["logits"]
    fit.quantizer.config.sinkhorn_epsilon = float(settings["sinkhorn_epsilon"])
    fit.quantizer.config.sinkhorn_iterations = joint.sinkhorn_iterations
    model = JointSIDT5.from_recommender_config(
        config,
        fit.quantizer,
        embeddings,
        fit.codes,
        decay,
        code_temperature=joint.code_temperature,
        hard_switch_epoch=joint.hard_switch_epoch,
        trainable=joint.trainable,
        code_gradient=joint.code_gradient,
        target_gradient=joint.target_gradient,
        mode=joint.mode,
        frozen_encoder=settings["frozen_encoder"],
        tokenizer_warmup_epochs=joint.tokenizer_warmup_epochs,
        code_hysteresis=joint.code_hysteresis,
        freeze_codes_epoch=joint.freeze_codes_epoch,
        alternate=joint.alternate,
        code_embeddings=joint.code_embeddings,
        alignment=joint.alignment,
    )
    learning_rates = dict(learning_rates)
    learning_rates.setdefault("quantizer.", joint.tokenizer_learning_rate)
    if any(param.requires_grad for param in decay.parameters()):
        learning_rates.setdefault("uncertainty_decay.", joint.sigma_learning_rate)
    callbacks = [UncertaintyDecayCallback(model), LivingCodesCallback(tokenizer, reassign=joint.reassign_codes)]
    if joint.frozen_code_levels:
        callbacks.append(FrozenCodeLevelsCallback(tuple(joint.frozen_code_levels)))
    return model, learning_rates, callbacks


def run_name(recipe: Recipe) -> str | None:
    """``diger-<mode>-<decay>`` when the joint model trains its codes or noises them.

    Frozen codes inside a joint model (``joint.trainable: false`` without noise) are TIGER's codes, so such
    a run is named by the others (``tiger``, ``tiger+soda``); ETEGRec's alignment names its own runs.
    """
    joint = recipe.joint
    if not joint.enabled or joint.alignment or not (joint.trainable or joint.uncertainty_decay != "none"):
        return None
    return f"diger-{joint.mode.replace('_', '-')}-{joint.uncertainty_decay}" + SOURCE_SUFFIXES[recipe.embeddings.source]


def build_model(recipe: Recipe, parts: ModelParts) -> BuiltModel | None:
    """The joint model that holds the quantizer, with its learning rates (tokenizer, sigma) and callbacks."""
    if not recipe.joint.enabled:
        return None
    model, learning_rates, callbacks = build_joint_model(
        recipe, parts.config, parts.fit, parts.embeddings, parts.tokenizer, parts.learning_rates
    )
    return BuiltModel(model, parts.tokenizer, parts.fit.stats, learning_rates, callbacks)


def extra_metrics(recipe: Recipe, model: Any, tokenizer: SemanticIDTokenizer) -> dict[str, float]:
    """The codes the model was evaluated and is saved with, and the share of items whose codes moved."""
    if not recipe.joint.enabled:
        return {}
    final = code_statistics(tokenizer.item_codes[:, :-1], recipe.quantizer.codebook_size)
    metrics = {f"codes/final/{k}": v for k, v in final.items()}
    if isinstance(model, JointSIDT5):  # last re-assignment and since the start
        metrics.update({f"codes/final/{k}": v for k, v in model.code_churn().items()})
    return metrics


def card_settings(recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The ``joint:`` section with its mode-dependent defaults resolved, or None without joint training."""
    joint = recipe.get("joint") or {}
    if not joint.get("enabled"):
        return None
    section = JointRecipe(**known_keys(joint, JointRecipe))  # a recipe.yaml from an older sidrec may hold more
    return {**dataclasses.asdict(section), **section.resolved()}


METHOD = register_method(
    Method(
        name="diger",
        sections={"joint": JointRecipe},
        check=check_recipe,
        run_name=run_name,
        living_codes=lambda recipe: recipe.joint.enabled,  # restored from a checkpoint with the model
        build_model=build_model,
        extra_metrics=extra_metrics,
        card_settings=card_settings,
    )
)

__all__ = [
    "METHOD",
    "STRATEGIES",
    "FrozenCodeLevelsCallback",
    "JointOutput",
    "JointRecipe",
    "JointSIDT5",
    "LivingCodesCallback",
    "QuantizerObjective",
    "UncertaintyDecay",
    "UncertaintyDecayCallback",
    "build_joint_model",
    "build_uncertainty_decay",
    "check_recipe",
    "code_balance_loss",
]
