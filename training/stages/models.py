"""The model a recipe trains: built fresh for its method, or loaded from a saved run to fine-tune."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback, set_seed

from ...modeling.configuration_sid_t5 import SIDT5Config
from ...modeling.modeling_dmrec_t5 import DMRecT5ForConditionalGeneration
from ...modeling.modeling_sid_t5 import SIDT5ForConditionalGeneration
from ...tokenization.semantic_codes import code_statistics
from ...tokenization.tokenization_semantic_id import SemanticIDTokenizer
from ..collaborative import combine_embeddings
from ..data import SequentialData
from ..errors import RecipeError
from ..finetune import load_base_model
from ..fit_quantizer import QuantizerFit
from ..objectives import build_objectives
from ..recipe import Recipe
from ..registry import any_method, first_answer
from .codes import (
    build_codes,
    build_tokenizer,
    codes_from_checkpoint,
    codes_from_run,
    collaborative_embeddings,
    embed_catalogue,
)


@dataclass
class BuiltModel:
    """A recommender ready to train, with what the trainer needs beside it."""

    model: SIDT5ForConditionalGeneration
    tokenizer: SemanticIDTokenizer
    code_stats: dict[str, float]
    learning_rates: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> learning rate
    callbacks: list[TrainerCallback] = field(default_factory=list)


@dataclass
class ModelParts:
    """What a method's ``build_model`` hook builds from: SID-T5's config over the codes, and what made them.

    ``embeddings`` is the table the RQ-VAE quantised (None when the codes came from a saved run or a
    checkpoint); ``text`` the catalogue's text embeddings when a method ``reads_text``.
    """

    config: SIDT5Config
    fit: QuantizerFit
    tokenizer: SemanticIDTokenizer
    embeddings: torch.Tensor | None
    text: torch.Tensor | None
    learning_rates: dict[str, float]


def build_recommender(recipe: Recipe, data: SequentialData, say=print, resume_from: str | None = None) -> BuiltModel:
    """A new recommender for ``data``: embeddings -> RQ-VAE codes -> tokenizer -> the method's model.

    TIGER: a plain SID-T5 over the fitted codes (or a saved run's, ``quantizer.codes_from``); a method with a
    ``build_model`` hook (DMRec-T5, DIGER's joint model) builds its own from the same parts.
    ``resume_from`` (a checkpoint of this run) supplies the codes it was trained on instead of a new fit
    (``codes_from_checkpoint``).
    """
    check_codebook_fits(recipe, data.num_items)
    check_item_texts(recipe, data)
    reads_text = any_method("reads_text", recipe)  # e.g. DMRec's meta-network, whatever the codes are made of
    resumed = codes_from_checkpoint(recipe, data, resume_from)
    if resumed is not None:  # an interrupted run continues on the codes it was trained on, without a new fit
        text = embed_catalogue(recipe, data) if reads_text else None
        fit, embeddings = resumed, None
        say(f"Codes of {resume_from}: " + fit.summary())
    elif recipe.quantizer.codes_from:  # a saved run's codes: nothing to quantise
        text = embed_catalogue(recipe, data) if reads_text else None
        fit, embeddings = codes_from_run(recipe, data), None
        say(f"Codes of {recipe.quantizer.codes_from}: " + fit.summary())
    else:
        needs_text = recipe.embeddings.source != "collaborative" or reads_text
        text = embed_catalogue(recipe, data) if needs_text else None
        collaborative = collaborative_embeddings(recipe, data)  # a SASRec run's item table, read once
        embeddings = combine_embeddings(text, collaborative, recipe.embeddings.source)  # what the RQ-VAE quantises
        fit = build_codes(recipe, embeddings, first_answer("code_fit", recipe, collaborative))
        say(fit.summary())
    tokenizer = build_tokenizer(recipe, fit, data)
    set_seed(recipe.seed)
    config = SIDT5Config(
        num_code_levels=fit.codes.size(1),
        codebook_size=recipe.quantizer.codebook_size,
        **dataclasses.asdict(recipe.model),  # ModelRecipe's fields are SIDT5Config arguments
    )
    learning_rates = dict(recipe.training.learning_rates)
    parts = ModelParts(config, fit, tokenizer, embeddings, text, learning_rates)
    built = first_answer("build_model", recipe, parts)
    return built or BuiltModel(SIDT5ForConditionalGeneration(config), tokenizer, fit.stats, learning_rates)


def check_codebook_fits(recipe: Recipe, num_items: int) -> None:
    """Refuse, before any embedding work, a codebook with more codes than there are items to place them on.

    k-means initialises each level's codes on the items (or the ``fit_sample`` items); with fewer items than
    codes it cannot, and with barely more most codes stay empty. The suggestion keeps about four items a code.
    """
    q = recipe.quantizer
    if q.codes_from:
        return
    fitted = min(num_items, q.fit_sample or num_items)
    if q.codebook_size > fitted:
        suggestion = max(2, 2 ** max(1, (fitted // 4).bit_length() - 1))
        where = (
            f"the {fitted:,} items the RQ-VAE is fitted on (quantizer.fit_sample)"
            if fitted < num_items
            else (f"this catalogue of {num_items:,} items")
        )
        raise RecipeError(
            f"quantizer.codebook_size={q.codebook_size} is larger than {where}: k-means cannot give every code an "
            f"item. Set quantizer.codebook_size to at most {fitted} (e.g. quantizer.codebook_size={suggestion}, "
            "about four items a code; docs/data.md, 'Small catalogues')"
        )


def check_item_texts(recipe: Recipe, data: SequentialData) -> None:
    """Text codes need text: refuse a catalogue most of whose items have none, before embedding it.

    Items with the same (empty) text get the same embedding and so one semantic ID each level down; the fit
    would end in a collision error that points at the codebook, not at the data.
    """
    if recipe.quantizer.codes_from or recipe.embeddings.source == "collaborative":
        return
    empty = sum(1 for text in data.item_texts if not text)
    if empty > len(data.item_texts) // 2:
        raise RecipeError(
            f"{empty:,} of {len(data.item_texts):,} items have no text in data.text_fields "
            f"({', '.join(recipe.data.text_fields)}): their embeddings would be identical and their semantic IDs "
            "collide. Point data.text_fields at the item table's text columns (docs/data.md, 'Your own data'), or "
            "use collaborative codes (embeddings.source: collaborative)"
        )


def load_for_finetuning(recipe: Recipe, data: SequentialData, say=print) -> BuiltModel:
    """The saved model named by ``finetune.from_model``, its tokenizer and its codes' statistics.

    The recipe's ``model`` and quantizer shape are set from the saved model, so the run's
    ``recipe.yaml`` and model card describe the network that was actually fine-tuned.
    """
    model, tokenizer = load_base_model(recipe.finetune.from_model, data)
    if "dmrec" in build_objectives(recipe.training.objectives) and not isinstance(
        model, DMRecT5ForConditionalGeneration
    ):
        raise RecipeError("objective `dmrec` needs a DMRec-T5 base model; finetune.from_model is not one")
    for name in dataclasses.asdict(recipe.model):
        if name != "attn_implementation":  # a training setting, not a saved shape
            setattr(recipe.model, name, getattr(model.config, name))
    recipe.quantizer.num_levels = tokenizer.num_levels - 1  # the saved codes end with the collision level
    recipe.quantizer.codebook_size = tokenizer.codebook_size
    say(f"Fine-tuning {recipe.finetune.from_model} ({type(model).__name__}, {tokenizer.num_items:,} items)")
    set_seed(recipe.seed)
    stats = code_statistics(tokenizer.item_codes[:, :-1], tokenizer.codebook_size)
    return BuiltModel(model, tokenizer, stats, dict(recipe.training.learning_rates))
