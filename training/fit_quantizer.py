"""Fit the RQ-VAE on a catalogue's embeddings and turn it into a semantic-ID code table.

A plain PyTorch loop rather than ``Trainer``: the whole catalogue is a few thousand vectors, one
fit takes seconds, and there is no evaluation or checkpointing to schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from ..tokenization.modeling_quantizer import SemanticIDQuantizer
from ..tokenization.semantic_codes import append_collision_level, code_statistics

if TYPE_CHECKING:
    from .embeddings import EmbeddingShards


@dataclass
class QuantizerFit:
    """A fitted quantizer, the catalogue's codes (with the collision level) and what was measured."""

    quantizer: SemanticIDQuantizer
    codes: torch.LongTensor
    stats: dict[str, float]
    loss_history: list[float] = field(default_factory=list)

    def summary(self) -> str:
        levels = sorted({key.split("/")[0] for key in self.stats if key.startswith("level")})
        usage = ", ".join(
            f"{lvl}: usage {self.stats[f'{lvl}/usage']:.0%} ppl {self.stats[f'{lvl}/perplexity']:.1f}" for lvl in levels
        )
        loss = f"; final loss {self.loss_history[-1]:.4f}" if self.loss_history else ""
        return (
            f"RQ-VAE codes: {usage}; collision rate {self.stats['collision_rate']:.2%} "
            f"(max {int(self.stats['max_items_per_code'])} items per code){loss}"
        )


def fit_quantizer(
    embeddings: torch.Tensor | EmbeddingShards,
    config: SemanticIDQuantizerConfig,
    epochs: int = 300,
    batch_size: int = 1024,
    learning_rate: float = 1e-3,
    kmeans_init: bool = True,
    seed: int = 0,
    regularizer=None,
    fit_sample: int | None = None,
) -> QuantizerFit:
    """Train an RQ-VAE on ``embeddings`` (N, d) and assign every item a unique code.

    Codes are the nearest codes of the trained quantizer plus TIGER's collision level (so the code
    length is ``config.num_levels + 1``). The logits' distance unit is calibrated on the catalogue
    (``calibrate_distance_scale``) so soft distributions and Gumbel noise are meaningful. Deterministic
    for a given seed on CPU. ``regularizer`` (LETTER's ``LetterRegularizer``) adds its losses to each
    batch's: called with the quantizer, the batch's output and the batch's item indices, it returns
    the weighted loss and its figures; ``new_epoch(quantizer)`` runs before each epoch.

    ``fit_sample`` bounds the fit for large catalogues: the RQ-VAE, its k-means initialisation and
    its distance unit are fitted on at most that many items drawn at random (seeded), and then every
    item is assigned its codes. An epoch then costs the same at 10M items as at ``fit_sample``.
    ``embeddings`` may be an :class:`~sidrec.training.embeddings.EmbeddingShards` table on disk: only
    the sample is read into memory, and the codes are assigned a chunk at a time.
    """
    if fit_sample is not None and (isinstance(fit_sample, bool) or not isinstance(fit_sample, int) or fit_sample < 1):
        raise ValueError(f"fit_sample must be a positive number of items or None, got {fit_sample!r}")
    if embeddings.dim() != 2 or embeddings.size(1) != config.input_dim:
        raise ValueError(
            f"embeddings have shape {tuple(embeddings.shape)} but the quantizer expects (N, {config.input_dim}); "
            "set quantizer.input_dim to the text encoder's width"
        )
    # The fit draws from the global generator (initialisation, dropout) seeded with ``seed``; fork_rng
    # restores the caller's generator afterwards, so fitting codes never reseeds the rest of a program.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fitted = _fit_items(embeddings.size(0), fit_sample, seed)
        return _fit(embeddings, fitted, config, epochs, batch_size, learning_rate, kmeans_init, seed, regularizer)


def _fit_items(count: int, fit_sample: int | None, seed: int) -> torch.LongTensor | None:
    """Sorted indices of the items the RQ-VAE is fitted on, or None for the whole catalogue."""
    if fit_sample is None or count <= fit_sample:
        return None
    generator = torch.Generator().manual_seed(seed + 1)  # its own stream: the fit's draws stay as without it
    return torch.randperm(count, generator=generator)[:fit_sample].sort().values


def _fit(embeddings, fitted, config, epochs, batch_size, learning_rate, kmeans_init, seed, regularizer) -> QuantizerFit:
    quantizer = SemanticIDQuantizer(config)
    # The rows the fit sees, in memory (a table too large for memory, e.g. ``EmbeddingShards``, is only
    # ever read for this sample and, a chunk at a time, for coding every item at the end).
    if fitted is not None:
        sample = embeddings[fitted]
    else:
        sample = embeddings if isinstance(embeddings, torch.Tensor) else embeddings[:]
    if kmeans_init:
        quantizer.init_codebooks_kmeans(sample, seed=seed)
    parameters = list(quantizer.parameters()) + (list(regularizer.parameters()) if regularizer is not None else [])
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    history = []
    quantizer.train()
    for _ in range(epochs):
        order = torch.randperm(sample.size(0), generator=generator)  # rows of ``sample``
        items_of = order if fitted is None else fitted[order]  # catalogue indices, as the regulariser reads them
        total, batches = 0.0, 0
        if regularizer is not None:
            regularizer.new_epoch(quantizer)
        for start in range(0, len(order), batch_size):
            items = items_of[start : start + batch_size]
            output = quantizer(sample[order[start : start + batch_size]])
            loss = output.loss
            if regularizer is not None:
                loss = loss + regularizer(quantizer, output, items)[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + output.loss.item(), batches + 1
        history.append(total / batches)
    quantizer.eval()
    quantizer.calibrate_distance_scale(sample)
    raw_codes = quantizer.encode_codes(embeddings)
    stats = code_statistics(raw_codes, config.codebook_size)
    codes = append_collision_level(raw_codes, config.codebook_size)
    return QuantizerFit(quantizer=quantizer, codes=codes, stats=stats, loss_history=history)
