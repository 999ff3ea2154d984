"""Codes that use their codebooks: per-level k-means, dead-code restarts, a balanced last level, RQ-KMeans."""

from __future__ import annotations

import pytest
import torch

from sidrec import SemanticIDQuantizer, SemanticIDQuantizerConfig
from sidrec.training.fit_quantizer import fit_quantizer


def identity_quantizer(num_levels: int, codebook_size: int, dim: int = 2, **config) -> SemanticIDQuantizer:
    """No VAE: the codebooks quantise the points themselves, so every residual can be worked out by hand."""
    return SemanticIDQuantizer(
        SemanticIDQuantizerConfig(
            input_dim=dim,
            hidden_dims=[],
            latent_dim=dim,
            num_levels=num_levels,
            codebook_size=codebook_size,
            encoder_type="identity",
            **config,
        )
    )


def two_clusters_with_offsets() -> torch.Tensor:
    """Points at (±10, 0) plus offsets (0, ±1): level 0 finds the clusters, level 1 the offsets."""
    return torch.tensor([[10.0, 1.0], [10.0, -1.0], [-10.0, 1.0], [-10.0, -1.0]])


def test_kmeans_initialises_every_level_on_that_levels_residuals():
    quantizer = identity_quantizer(num_levels=2, codebook_size=2)
    quantizer.init_codebooks_kmeans(two_clusters_with_offsets(), iterations=10, seed=0)
    level0 = sorted(quantizer.codebooks[0].tolist())
    assert level0 == [[-10.0, 0.0], [10.0, 0.0]]  # the two cluster means
    level1 = sorted(quantizer.codebooks[1].tolist())
    assert level1 == [[0.0, -1.0], [0.0, 1.0]]  # the residuals left by level 0: the offsets, not the points
    codes = quantizer.encode_codes(two_clusters_with_offsets())
    assert len({tuple(code) for code in codes.tolist()}) == 4  # every point its own code


def test_identity_encoder_needs_the_latent_to_be_the_input():
    with pytest.raises(ValueError, match="latent_dim .* must equal input_dim"):
        SemanticIDQuantizerConfig(input_dim=4, latent_dim=2, encoder_type="identity")
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        SemanticIDQuantizerConfig(encoder_type="pca")


def test_rq_kmeans_fit_is_residual_kmeans_without_training():
    """epochs=0 with an identity encoder: the codebooks are the k-means centroids, the fit trains nothing."""
    points = two_clusters_with_offsets()
    config = SemanticIDQuantizerConfig(
        input_dim=2, hidden_dims=[], latent_dim=2, num_levels=2, codebook_size=2, encoder_type="identity"
    )
    fit = fit_quantizer(points, config, epochs=0, kmeans_iterations=10, seed=0)
    assert fit.loss_history == [] and fit.usage_history == []
    assert sorted(fit.quantizer.codebooks[0].tolist()) == [[-10.0, 0.0], [10.0, 0.0]]
    assert fit.stats["collision_rate"] == 0.0
    assert fit.codes[:, -1].tolist() == [0, 0, 0, 0]  # no collisions: the collision level is all zeros
    assert list(fit.quantizer.parameters()) == [fit.quantizer.codebooks]  # no encoder or decoder weights


def test_a_fit_without_epochs_or_kmeans_is_refused():
    config = SemanticIDQuantizerConfig(input_dim=2, hidden_dims=[], latent_dim=2, num_levels=1, codebook_size=2)
    with pytest.raises(ValueError, match="epochs >= 1 or a k-means"):
        fit_quantizer(two_clusters_with_offsets(), config, epochs=0, kmeans_init=False)


def test_a_dead_code_is_restarted_onto_a_residual(monkeypatch):
    """Codes 1-3 start far from every point, so no item chooses them; restarts move them onto points."""
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    config = SemanticIDQuantizerConfig(
        input_dim=2, hidden_dims=[], latent_dim=2, num_levels=1, codebook_size=4, encoder_type="identity"
    )

    def dead_start(self, embeddings, iterations=20, seed=0):  # in place of k-means: three codes dead from the start
        self.codebooks.data.copy_(torch.tensor([[[2.5, 2.5], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]]))

    monkeypatch.setattr(SemanticIDQuantizer, "init_codebooks_kmeans", dead_start)
    without = fit_quantizer(points, config, epochs=3, batch_size=4)
    assert without.usage_history == [[0.25], [0.25], [0.25]]  # one code of four used, to the end
    assert without.restarted_codes == 0 and without.stats["level0/usage"] == 0.25
    restarted = fit_quantizer(points, config, epochs=3, batch_size=4, restart_dead_codes=True)
    assert restarted.usage_history[0] == [0.25] and restarted.restarted_codes >= 3
    assert restarted.usage_history[-1][0] > 0.25  # after the restarts more codes have items
    for code in (1, 2, 3):  # every restarted code sits on (near) a real point, not at +-100
        moved = restarted.quantizer.codebooks[0, code]
        assert min(torch.dist(moved, point).item() for point in points) < 0.1


def test_restarts_leave_a_fit_without_dead_codes_unchanged():
    """Restarts draw from their own stream: where no code dies, the fit is the same with and without them."""
    points = two_clusters_with_offsets()
    config = SemanticIDQuantizerConfig(
        input_dim=2, hidden_dims=[], latent_dim=2, num_levels=2, codebook_size=2, encoder_type="identity"
    )
    plain = fit_quantizer(points, config, epochs=3, seed=1)
    assert plain.usage_history == [[1.0, 1.0]] * 3  # no code ever dies
    restarted = fit_quantizer(points, config, epochs=3, seed=1, restart_dead_codes=True)
    assert restarted.restarted_codes == 0
    assert torch.equal(plain.codes, restarted.codes)
    assert torch.equal(plain.quantizer.codebooks, restarted.quantizer.codebooks)


def test_restarts_raise_code_usage_on_real_titles(fitted, title_embeddings):
    """The session's fit (3 x 32 codes, 30 epochs) loses codes; the same fit with restarts uses them all."""
    restarted = fit_quantizer(
        title_embeddings, fitted.quantizer.config, epochs=30, batch_size=512, seed=0, restart_dead_codes=True
    )
    levels = range(fitted.quantizer.config.num_levels)
    plain_usage = min(fitted.stats[f"level{level}/usage"] for level in levels)
    restarted_usage = min(restarted.stats[f"level{level}/usage"] for level in levels)
    assert restarted.restarted_codes > 0
    assert plain_usage < 0.9 <= restarted_usage
    assert restarted.stats["collision_rate"] < fitted.stats["collision_rate"]


def test_balanced_last_level_gives_distinct_codes_where_nearest_collides():
    """Four points nearest to one code: Sinkhorn spreads them over the last level's four codes."""
    points = torch.tensor([[0.3, 0.1], [-0.2, 0.2], [0.1, -0.3], [0.0, 0.4]])
    codebook = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [-4.0, 0.5], [0.5, -5.0]]])
    nearest = identity_quantizer(num_levels=1, codebook_size=4)
    balanced = identity_quantizer(num_levels=1, codebook_size=4, sinkhorn_epsilon=0.003, sinkhorn_levels=[-1])
    for quantizer in (nearest, balanced):
        quantizer.codebooks.data.copy_(codebook)
    assert nearest.encode_codes(points)[:, 0].tolist() == [0, 0, 0, 0]
    codes = balanced.encode_codes(points)[:, 0].tolist()
    assert sorted(codes) == [0, 1, 2, 3]
    # The cheapest one-to-one assignment of the squared distances, worked out over all 24 permutations:
    # total 44.24 (the next best, [1, 0, 3, 2], costs 45.64).
    assert codes == [1, 2, 3, 0]
