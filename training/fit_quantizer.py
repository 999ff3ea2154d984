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
    # Per epoch, the share of each level's codes that at least one item of the epoch chose (before restarts).
    usage_history: list[list[float]] = field(default_factory=list)
    restarted_codes: int = 0  # dead codes re-seeded over the whole fit

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
    restart_dead_codes: bool = False,
    kmeans_iterations: int = 20,
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

    ``restart_dead_codes`` re-seeds, after every epoch but the last, each code no item chose during the
    epoch with the residual of a random item at its level (its optimizer moments zeroed): without it a
    code that loses its items never gets them back, and the fit ends using a fraction of each codebook.
    ``epochs=0`` with an ``encoder_type="identity"`` config is RQ-KMeans: residual k-means of the
    embeddings themselves (``kmeans_iterations`` Lloyd steps per level), no VAE.
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
        schedule = _Schedule(epochs, batch_size, learning_rate, kmeans_init, kmeans_iterations, restart_dead_codes)
        return _fit(embeddings, fitted, config, schedule, seed, regularizer)


def _fit_items(count: int, fit_sample: int | None, seed: int) -> torch.LongTensor | None:
    """Sorted indices of the items the RQ-VAE is fitted on, or None for the whole catalogue."""
    if fit_sample is None or count <= fit_sample:
        return None
    generator = torch.Generator().manual_seed(seed + 1)  # its own stream: the fit's draws stay as without it
    return torch.randperm(count, generator=generator)[:fit_sample].sort().values


@dataclass(frozen=True)
class _Schedule:
    """How the fit runs (as opposed to what the quantizer is, its config)."""

    epochs: int
    batch_size: int
    learning_rate: float
    kmeans_init: bool
    kmeans_iterations: int
    restart_dead_codes: bool


def _fit(embeddings, fitted, config, schedule: _Schedule, seed, regularizer) -> QuantizerFit:
    if schedule.epochs < 1 and not schedule.kmeans_init:
        raise ValueError("a quantizer fit needs epochs >= 1 or a k-means initialisation (RQ-KMeans: epochs=0)")
    quantizer = SemanticIDQuantizer(config)
    # The rows the fit sees, in memory (a table too large for memory, e.g. ``EmbeddingShards``, is only
    # ever read for this sample and, a chunk at a time, for coding every item at the end).
    if fitted is not None:
        sample = embeddings[fitted]
    else:
        sample = embeddings if isinstance(embeddings, torch.Tensor) else embeddings[:]
    if schedule.kmeans_init:
        quantizer.init_codebooks_kmeans(sample, iterations=schedule.kmeans_iterations, seed=seed)
    parameters = list(quantizer.parameters()) + (list(regularizer.parameters()) if regularizer is not None else [])
    optimizer = torch.optim.AdamW(parameters, lr=schedule.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    # Restarts draw from a stream of their own, so a fit without dead codes draws exactly as before.
    restarts = torch.Generator().manual_seed(seed + 2)
    history, usage_history, restarted = [], [], 0
    levels, size = config.num_levels, config.codebook_size
    quantizer.train()
    for epoch in range(schedule.epochs):
        order = torch.randperm(sample.size(0), generator=generator)  # rows of ``sample``
        items_of = order if fitted is None else fitted[order]  # catalogue indices, as the regulariser reads them
        total, batches = 0.0, 0
        used = torch.zeros(levels, size, dtype=torch.bool)
        if regularizer is not None:
            regularizer.new_epoch(quantizer)
        for start in range(0, len(order), schedule.batch_size):
            items = items_of[start : start + schedule.batch_size]
            output = quantizer(sample[order[start : start + schedule.batch_size]])
            loss = output.loss
            if regularizer is not None:
                loss = loss + regularizer(quantizer, output, items)[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + output.loss.item(), batches + 1
            used.scatter_(1, output.codes.t(), True)
        history.append(total / batches)
        usage_history.append(used.float().mean(dim=1).tolist())
        if schedule.restart_dead_codes and epoch < schedule.epochs - 1:
            restarted += _restart_dead_codes(quantizer, optimizer, used, sample, schedule.batch_size, restarts)
    quantizer.eval()
    quantizer.calibrate_distance_scale(sample)
    raw_codes = quantizer.encode_codes(embeddings)
    stats = code_statistics(raw_codes, config.codebook_size)
    codes = append_collision_level(raw_codes, config.codebook_size)
    return QuantizerFit(
        quantizer=quantizer,
        codes=codes,
        stats=stats,
        loss_history=history,
        usage_history=usage_history,
        restarted_codes=restarted,
    )


def _restart_dead_codes(quantizer, optimizer, used, sample, batch_size, generator) -> int:
    """Re-seed every code of ``used`` (L, K) that is False from a random batch's residuals; returns how many."""
    dead_total = 0
    rows = torch.randperm(sample.size(0), generator=generator)[:batch_size]
    for level in range(used.size(0)):
        dead = (~used[level]).nonzero().squeeze(1)
        if len(dead) == 0:
            continue
        quantizer.restart_codes(level, dead, sample[rows], generator=generator)
        state = optimizer.state.get(quantizer.codebooks, {})
        for moment in ("exp_avg", "exp_avg_sq"):  # a re-seeded code starts its optimisation afresh
            if moment in state:
                state[moment][level, dead] = 0
        dead_total += len(dead)
    return dead_total
