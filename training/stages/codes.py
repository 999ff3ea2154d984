"""From item text to semantic IDs: embed the catalogue, fit the RQ-VAE, build the tokenizer."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from ...tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from ...tokenization.semantic_codes import code_statistics
from ...tokenization.tokenization_semantic_id import SemanticIDTokenizer
from ..collaborative import load_collaborative_embeddings
from ..data import SequentialData
from ..embeddings import EmbeddingShards, embed_texts, embeds_in_shards
from ..finetune import check_same_catalogue, resolve_model_dir
from ..fit_quantizer import QuantizerFit, fit_quantizer
from ..recipe import EmbeddingRecipe, Recipe
from ..registry import any_method

# QuantizerRecipe fields that are SemanticIDQuantizerConfig arguments (the rest drive the fit).
QUANTIZER_ARCHITECTURE_KEYS = ("hidden_dims", "latent_dim", "num_levels", "codebook_size", "commitment_beta", "dropout")


def embed_catalogue(recipe: Recipe | EmbeddingRecipe, data: SequentialData) -> torch.Tensor | EmbeddingShards:
    """Text embeddings (N, d) of every item, cached.

    Up to ``shard_size`` texts the main process computes them and the others read its cache; a larger
    catalogue is split into shards that every process embeds its share of (``embed_texts``). With
    ``keep_shards`` those shards stay on disk and come back as a memory-mapped :class:`EmbeddingShards`.
    """
    settings = recipe.embeddings if isinstance(recipe, Recipe) else recipe
    state = PartialState()
    sharded = embeds_in_shards(len(data.item_texts), settings.shard_size, settings.cache_dir)
    with nullcontext() if sharded else state.main_process_first():
        return embed_texts(
            data.item_texts,
            model_name_or_path=settings.model,
            max_seq_length=settings.max_seq_length,
            batch_size=settings.batch_size,
            cache_dir=settings.cache_dir,
            show_progress_bar=state.is_main_process,
            shard_size=settings.shard_size,
            keep_shards=settings.keep_shards,
        )


def collaborative_embeddings(recipe: Recipe, data: SequentialData) -> torch.Tensor | None:
    """The SASRec run's item table when the recipe reads it (a collaborative source, or a method's code fit
    that ``needs_collaborative``, LETTER's), loaded once."""
    if "collaborative" not in recipe.embeddings.source and not any_method("needs_collaborative", recipe):
        return None
    return load_collaborative_embeddings(recipe.embeddings.collaborative_run, data.item_ids)


def build_codes(
    recipe: Recipe, embeddings: torch.Tensor | EmbeddingShards, method_fit: dict[str, Any] | None = None
) -> QuantizerFit:
    """Fit the RQ-VAE on the catalogue's embeddings and give every item a unique code.

    ``method_fit`` is a method's ``code_fit`` answer: a ``regularizer`` for the fit's loss and the Sinkhorn
    balancing it wants (LETTER); otherwise ``quantizer.balance_last_level`` decides the balancing.
    """
    q = recipe.quantizer
    method_fit = dict(method_fit or {})
    regularizer = method_fit.pop("regularizer", None)
    balance = method_fit
    if not balance and q.balance_last_level:
        balance = {"sinkhorn_epsilon": 0.003, "sinkhorn_levels": [-1]}
    architecture = {name: getattr(q, name) for name in QUANTIZER_ARCHITECTURE_KEYS}
    rq_kmeans = q.method == "rq_kmeans"
    if rq_kmeans:  # the codebooks live in the embedding space itself
        architecture.update(hidden_dims=[], latent_dim=embeddings.size(1), encoder_type="identity")
    config = SemanticIDQuantizerConfig(input_dim=embeddings.size(1), **architecture, **balance)
    return fit_quantizer(
        embeddings,
        config,
        epochs=0 if rq_kmeans else q.epochs,
        batch_size=q.batch_size,
        learning_rate=q.learning_rate,
        kmeans_init=q.kmeans_init,
        seed=recipe.seed,
        regularizer=regularizer,
        fit_sample=q.fit_sample,
        restart_dead_codes=q.restart_dead_codes,
        kmeans_iterations=q.kmeans_iterations,
    )


def codes_from_run(recipe: Recipe, data: SequentialData) -> QuantizerFit:
    """The codes (and quantizer) of the saved run ``quantizer.codes_from`` names, as if fitted here.

    The catalogue must be indexed as that run's was. The quantizer shape of the recipe is set from the saved
    tokenizer, so ``recipe.yaml`` and the model card describe the codes the run actually read.
    """
    directory = resolve_model_dir(recipe.quantizer.codes_from, "quantizer.codes_from")
    saved = SemanticIDTokenizer.from_pretrained(str(directory))
    check_same_catalogue(saved, directory, data, "quantizer.codes_from")
    recipe.quantizer.num_levels = saved.num_levels - 1  # the saved codes end with the collision level
    recipe.quantizer.codebook_size = saved.codebook_size
    return fit_of(saved)


def fit_of(saved: SemanticIDTokenizer) -> QuantizerFit:
    """A saved tokenizer's codes and quantizer as a fit, with the statistics a fit measures."""
    codes = saved.item_codes.clone()
    stats = code_statistics(codes[:, :-1], saved.codebook_size)
    return QuantizerFit(quantizer=saved.quantizer, codes=codes, stats=stats)


def codes_from_checkpoint(recipe: Recipe, data: SequentialData, checkpoint: str | None) -> QuantizerFit | None:
    """The codes a static-code run's checkpoint was trained on, so that resuming it skips the quantizer fit.

    A paper-size fit takes most of an hour on CPU; a run resumed in every session would spend it again, and
    could come out differently on another machine (``check_resumed_codes`` would then refuse the resume).
    Returns None, and the run fits as usual, when there is no checkpoint, the model keeps a living code
    table (DIGER's joint training restores its own), or the checkpoint's tokenizer is not of this recipe's
    shape or catalogue.
    """
    directory = Path(checkpoint) if checkpoint else None
    saved_files = ("item_codes.safetensors", "tokenizer_config.json")
    if (
        directory is None
        or any_method("living_codes", recipe)
        or not all((directory / name).exists() for name in saved_files)
    ):
        return None
    saved = SemanticIDTokenizer.from_pretrained(str(directory))
    q = recipe.quantizer
    if (saved.num_levels, saved.codebook_size) != (q.num_levels + 1, q.codebook_size) or saved.quantizer is None:
        return None
    check_same_catalogue(saved, directory, data, "--resume_from_checkpoint")
    return fit_of(saved)


def build_tokenizer(recipe: Recipe, fit: QuantizerFit, data: SequentialData | None = None) -> SemanticIDTokenizer:
    """The tokenizer over the fitted codes, carrying the quantizer that produced them and the raw item ids."""
    return SemanticIDTokenizer(
        item_codes=fit.codes,
        quantizer=fit.quantizer,
        num_levels=fit.codes.size(1),
        codebook_size=recipe.quantizer.codebook_size,
        num_user_buckets=recipe.model.num_user_buckets,
        max_history=recipe.data.max_history,
        item_ids=data.item_ids if data is not None else None,
        item_titles=data.item_titles if data is not None else None,
    )
