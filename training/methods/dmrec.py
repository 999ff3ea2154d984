"""DMRec (SIGIR 2025): distribution matching between the collaborative and the language space.

Two backbones carry it: DMRec-T5 (SID-T5 with Gaussian heads, the meta-network and a memory token
for ``z``; recipe ``dmrec: {enabled: true}``) and the paper's own Mult-VAE setting (recipe
``task: collaborative``). Both are trained with the ``dmrec`` objective, whose strategy (GODM, CPDM,
MDDM, or ``none`` for the base VAE) and ``beta`` are its options. This module holds the objective,
the two recipe sections, their rules and the model builders the pipeline calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import set_seed

from ...modeling.configuration_dmrec_t5 import DMRecT5Config
from ...modeling.configuration_mult_vae import MultVAEConfig
from ...modeling.gaussian_matching import MATCHING_STRATEGIES, matching_loss
from ...modeling.modeling_dmrec_t5 import DMRecT5ForConditionalGeneration
from ...modeling.modeling_mult_vae import MultVAEForCollaborativeFiltering
from ..data import load_sequential_data, random_split
from ..data.item_sets import ItemSetCollator
from ..errors import RecipeError
from ..objectives import Objective, build_objectives, objective_settings, register_objective
from ..ranking import ItemSetRanker
from ..recipe import Recipe, refuse_keep_shards
from ..registry import SOURCE_SUFFIXES, Method, register_method
from ..stages.codes import embed_catalogue
from ..stages.models import BuiltModel, ModelParts
from ..stages.run_dir import atomic_directory
from ..tasks import PreparedRun, Task

if TYPE_CHECKING:
    from ...modeling.configuration_sid_t5 import SIDT5Config


@dataclass
class DMRecRecipe:
    """DMRec on SID-T5 (``enabled: true``): Gaussian heads, the meta-network and a memory token for ``z``.

    The matching strategy and its ``beta`` are the ``dmrec`` objective's options in
    ``training.objectives``; this section shapes the model.
    """

    enabled: bool = False
    latent_size: int = 64
    meta_hidden_size: int = 600
    combine_posteriors: bool = True


@dataclass
class MultVAERecipe:
    """DMRec's own setting (``task: collaborative``): Mult-VAE on a random split of each user's items.

    The meta-network is built when the ``dmrec`` objective's strategy is not ``none``.
    """

    hidden_size: int = 600
    latent_size: int = 200
    dropout: float = 0.3
    meta_hidden_size: int = 600
    combine_posteriors: bool = True
    split: list[int] = field(default_factory=lambda: [3, 1, 1])
    eval_every_epochs: int = 3


@register_objective
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
        return loss, {f"dmrec/{name}": value.detach() for name, value in terms.items()}


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """DMRec-T5 needs its objective and static codes; the objective needs a model with Gaussian heads."""
    if recipe.task == "collaborative":
        collaborative_objective(recipe)
        return
    if "dmrec" in objectives and not recipe.dmrec.enabled:
        raise RecipeError(
            "objective `dmrec` matches the Gaussians of DMRec-T5: set `dmrec: {enabled: true}` "
            "(or `task: collaborative` for the Mult-VAE setting)"
        )
    if recipe.dmrec.enabled and recipe.joint.enabled:
        raise RecipeError("dmrec.enabled and joint.enabled cannot be combined yet: DMRec-T5 trains over static codes")
    if recipe.dmrec.enabled and recipe.embeddings.keep_shards:
        refuse_keep_shards("dmrec.enabled (its meta-network reads every history item's embedding)")
    if recipe.dmrec.enabled and "dmrec" not in objectives:
        raise RecipeError(
            "dmrec.enabled without the `dmrec` objective leaves the Gaussians unregularised: add "
            "`dmrec: {strategy: mddm, beta: 0.5}` to training.objectives"
        )


def collaborative_objective(recipe: Recipe) -> DMRecObjective:
    """The recipe's ``dmrec`` objective; the collaborative task always has one (``none`` = plain Mult-VAE)."""
    objectives = build_objectives(recipe.training.objectives)
    if set(objectives) != {"ce", "dmrec"}:
        raise RecipeError(
            "task: collaborative trains Mult-VAE with `ce` (its multinomial likelihood) and `dmrec` "
            "(strategy none | godm | cpdm | mddm); set training.objectives to "
            "{ce: 1.0, dmrec: {strategy: mddm, beta: 0.5}}"
        )
    return objectives["dmrec"]


def build_dmrec_t5(recipe: Recipe, config: SIDT5Config, embeddings: torch.Tensor) -> DMRecT5ForConditionalGeneration:
    """DMRec-T5 over the codes ``config`` describes, carrying the items' text embeddings for the meta-network."""
    model = DMRecT5ForConditionalGeneration(
        DMRecT5Config(
            num_items=embeddings.size(0),
            text_embedding_size=embeddings.size(1),
            latent_size=recipe.dmrec.latent_size,
            meta_hidden_size=recipe.dmrec.meta_hidden_size,
            combine_posteriors=recipe.dmrec.combine_posteriors,
            num_code_levels=config.num_code_levels,
            codebook_size=config.codebook_size,
            **dataclasses.asdict(recipe.model),
        )
    )
    model.set_item_text_embeddings(embeddings)
    return model


def build_mult_vae(recipe: Recipe, num_items: int, embeddings: torch.Tensor | None) -> MultVAEForCollaborativeFiltering:
    """Mult-VAE from the recipe; with ``embeddings`` it carries the meta-network over them."""
    m = recipe.mult_vae
    config = MultVAEConfig(
        num_items=num_items,
        hidden_size=m.hidden_size,
        latent_size=m.latent_size,
        dropout=m.dropout,
        text_embedding_size=0 if embeddings is None else embeddings.size(1),
        meta_hidden_size=m.meta_hidden_size,
        combine_posteriors=m.combine_posteriors,
    )
    model = MultVAEForCollaborativeFiltering(config)
    if embeddings is not None:
        model.set_item_text_embeddings(embeddings)
    return model


class MultVAETask(Task):
    """DMRec's paper setting: Mult-VAE on a random 3:1:1 split, ranked over every item not trained on."""

    best_metric = "recall@20"

    def prepare(self, recipe: Recipe, verbose: bool, say, resume_from: str | None) -> PreparedRun:
        objective = collaborative_objective(recipe)
        data = load_sequential_data(recipe.data, verbose=verbose)
        splits = random_split(data.sequences, tuple(recipe.mult_vae.split), seed=recipe.seed)
        held_out = ", ".join(
            f"{name} {sum(map(len, splits[name]['held_out'])):,}" for name in ("train", "validation", "test")
        )
        say(f"random {':'.join(map(str, recipe.mult_vae.split))} split: {held_out} interactions")
        embeddings = embed_catalogue(recipe, data) if objective.strategy != "none" else None
        set_seed(recipe.seed)
        model = build_mult_vae(recipe, data.num_items, embeddings)
        say(f"Mult-VAE ({objective.strategy}): {sum(p.numel() for p in model.parameters()):,} parameters")
        batch_size = recipe.training.batch_size
        every = -(-len(splits["train"]) // batch_size) * recipe.mult_vae.eval_every_epochs  # steps between evals
        return PreparedRun(
            model=model,
            train=splits["train"],
            validation=splits["validation"],
            test=splits["test"],
            collator=ItemSetCollator(),
            trainer_options={"ranker": lambda trained: ItemSetRanker(trained, batch_size)},
            arguments={
                "eval_strategy": "steps",
                "save_strategy": "steps",
                "eval_steps": every,
                "save_steps": every,
                "metric_for_best_model": "recall@20",
                "train_sampling_strategy": "random",
                "per_device_eval_batch_size": batch_size,
            },
            state={"data": data, "objective": objective},
        )

    def metrics(self, recipe: Recipe, prepared: PreparedRun, trainer) -> dict:
        data, objective = prepared.state["data"], prepared.state["objective"]
        metrics = {f"data/{k}": v for k, v in data.stats().items() if not k.endswith("_examples")}
        return {**metrics, "dmrec/strategy": objective.strategy, "dmrec/beta": objective.beta}

    def save(self, recipe: Recipe, prepared: PreparedRun, output_dir: Path) -> dict:
        with atomic_directory(output_dir / "model") as staging:
            prepared.model.save_pretrained(str(staging))
        return {}

    def report(self, recipe: Recipe, prepared: PreparedRun, metrics: dict, card: Path, say) -> None:
        ks, output_dir = recipe.evaluation.ks, Path(recipe.output_dir)
        say(
            f"\nTest, {len(prepared.test):,} users, all items not seen in training: "
            + "  ".join(f"{name}@{k} {metrics[f'test/{name}@{k}']:.4f}" for name in ("recall", "ndcg") for k in ks)
        )
        say(f"Saved the model to {output_dir / 'model'}; metrics to {output_dir / 'metrics.json'}")


def run_name(recipe: Recipe) -> str | None:
    """``mult-vae[-strategy]`` for the collaborative task; ``dmrec-t5`` (with the codes' source suffix)."""
    if recipe.task == "collaborative":
        options = (recipe.training.objectives or {}).get("dmrec") or {}
        strategy = options.get("strategy", "mddm") if isinstance(options, dict) else "mddm"
        return "mult-vae" if strategy == "none" else f"mult-vae-{strategy}"
    return "dmrec-t5" + SOURCE_SUFFIXES[recipe.embeddings.source] if recipe.dmrec.enabled else None


def build_model(recipe: Recipe, parts: ModelParts) -> BuiltModel | None:
    """DMRec-T5 over the fitted codes, carrying the items' text embeddings for its meta-network."""
    if not recipe.dmrec.enabled:
        return None
    model = build_dmrec_t5(recipe, parts.config, parts.text)
    return BuiltModel(model, parts.tokenizer, parts.fit.stats, parts.learning_rates)


def card_settings(recipe: dict) -> dict | None:
    """The DMRec section merged with its objective's options (strategy, beta, weight), or None for other methods."""
    section = recipe.get("dmrec") or {}
    if not section.get("enabled"):
        return None
    objectives = (recipe.get("training") or {}).get("objectives") or {}
    return {**objective_settings({"dmrec": {}, **objectives}, "dmrec"), **section}  # defaults when not named


METHOD = register_method(
    Method(
        name="dmrec",
        sections={"dmrec": DMRecRecipe, "mult_vae": MultVAERecipe},
        check=check_recipe,
        run_name=run_name,
        task=lambda recipe: MultVAETask() if recipe.task == "collaborative" else None,
        reads_text=lambda recipe: recipe.dmrec.enabled,  # the meta-network, whatever the codes are made of
        build_model=build_model,
        card_settings=card_settings,
    )
)
