"""RQ-VAE: the assignment function's switches, hand-computed losses, gradients, fitting on real data."""

from __future__ import annotations

import math

import pytest
import torch

from sidrec import SemanticIDQuantizer, SemanticIDQuantizerConfig
from sidrec.tokenization.semantic_codes import append_collision_level, code_statistics


def hand_quantizer() -> SemanticIDQuantizer:
    """Identity encoder, 2 levels x 2 codes in 2-d: every distance can be worked out on paper."""
    config = SemanticIDQuantizerConfig(input_dim=2, hidden_dims=[], latent_dim=2, num_levels=2, codebook_size=2)
    quantizer = SemanticIDQuantizer(config)
    with torch.no_grad():
        quantizer.encoder[0].weight.copy_(torch.eye(2))
        quantizer.encoder[0].bias.zero_()
        quantizer.codebooks.copy_(torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [-0.1, -0.2]]]))
    return quantizer


def test_nearest_assignment_matches_hand_computation():
    quantizer = hand_quantizer()
    out = quantizer.assign(torch.tensor([[0.9, 0.7]]))
    # level 0: d = (1.30, 0.10) -> code 1; residual (-0.1, -0.3); level 1: d = (0.10, 0.01) -> code 1
    assert out.codes.tolist() == [[1, 1]]
    # sum over levels of (1 + beta) * mean squared error between residual and chosen code
    expected = 1.25 * ((0.01 + 0.09) / 2) + 1.25 * ((0.0 + 0.01) / 2)
    assert out.quantization_loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.probs[0, 0, 1].item() == pytest.approx(1 / (1 + math.exp(-1.2)), rel=1e-5)
    assert torch.allclose(out.quantized, torch.tensor([[0.9, 0.8]]))
    assert torch.allclose(out.probs.sum(-1), torch.ones(1, 2))


@pytest.mark.parametrize("mode", ["nearest", "gumbel"])
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("noise", ["scalar", "per_level", "per_sample"])
def test_assignment_switch_matrix_shapes_and_gradients(mode, hard, noise):
    torch.manual_seed(0)
    config = SemanticIDQuantizerConfig(input_dim=12, hidden_dims=[16], latent_dim=8, num_levels=3, codebook_size=5)
    quantizer = SemanticIDQuantizer(config)
    x = torch.randn(7, 12)
    scale = {"scalar": 0.5, "per_level": torch.tensor([1.0, 0.5, 0.0]), "per_sample": torch.rand(7, 1)}[noise]
    out = quantizer(x, mode=mode, hard=hard, noise_scale=scale)
    assert out.codes.shape == (7, 3) and out.codes.dtype == torch.long
    assert out.probs.shape == (7, 3, 5) and out.assignment.shape == (7, 3, 5)
    assert out.quantized.shape == (7, 8) and out.reconstruction.shape == (7, 12)
    assert int(out.codes.max()) < 5
    if mode == "gumbel" and hard:  # forward pass uses exact one-hots
        assert torch.allclose(out.assignment.sum(-1), torch.ones(7, 3))
        assert set(out.assignment.detach().unique().tolist()) <= {0.0, 1.0}
    out.loss.backward()
    assert quantizer.codebooks.grad.abs().sum() > 0
    assert quantizer.encoder[0].weight.grad.abs().sum() > 0


def test_gumbel_gradient_of_a_downstream_loss_reaches_every_codebook_row():
    """Straight-through: the soft probabilities carry gradient to all codes, not only the chosen one."""
    torch.manual_seed(0)
    config = SemanticIDQuantizerConfig(input_dim=6, hidden_dims=[], latent_dim=4, num_levels=1, codebook_size=3)
    quantizer = SemanticIDQuantizer(config)
    out = quantizer.assign(quantizer.encoder(torch.randn(4, 6)), mode="gumbel", hard=True)
    (out.quantized**2).sum().backward()
    assert (quantizer.codebooks.grad[0].abs().sum(-1) > 0).all()


def test_zero_noise_gumbel_picks_the_nearest_code():
    torch.manual_seed(0)
    quantizer = SemanticIDQuantizer(
        SemanticIDQuantizerConfig(input_dim=6, hidden_dims=[], latent_dim=4, num_levels=2, codebook_size=7)
    )
    latent = torch.randn(20, 4)
    assert torch.equal(quantizer.assign(latent, mode="gumbel", noise_scale=0.0).codes, quantizer.assign(latent).codes)


def test_unknown_assignment_mode_is_rejected():
    with pytest.raises(ValueError, match="Unknown assignment mode"):
        hand_quantizer().assign(torch.zeros(1, 2), mode="sinkhorn")


def test_fit_on_real_embeddings_lowers_loss_and_gives_unique_codes(fitted, title_embeddings):
    assert fitted.loss_history[-1] < fitted.loss_history[0]
    assert fitted.codes.shape == (title_embeddings.size(0), 4)
    assert torch.unique(fitted.codes, dim=0).size(0) == fitted.codes.size(0)
    assert 0 < fitted.stats["level0/usage"] <= 1 and fitted.stats["level0/perplexity"] > 1
    assert "collision rate" in fitted.summary()


def test_fit_is_deterministic_for_a_seed(title_embeddings):
    from sidrec.training.fit_quantizer import fit_quantizer

    config = SemanticIDQuantizerConfig(input_dim=384, hidden_dims=[32], latent_dim=8, num_levels=2, codebook_size=32)
    first = fit_quantizer(title_embeddings[:300], config, epochs=3, seed=3)
    second = fit_quantizer(title_embeddings[:300], config, epochs=3, seed=3)
    assert torch.equal(first.codes, second.codes)


def test_fit_sample_trains_on_a_subset_and_codes_every_item(title_embeddings):
    from sidrec.training.fit_quantizer import fit_quantizer

    config = SemanticIDQuantizerConfig(input_dim=384, hidden_dims=[32], latent_dim=8, num_levels=2, codebook_size=32)
    items = title_embeddings[:600]
    whole = fit_quantizer(items, config, epochs=3, seed=3)
    assert torch.equal(fit_quantizer(items, config, epochs=3, seed=3, fit_sample=600).codes, whole.codes)
    sampled = fit_quantizer(items, config, epochs=3, seed=3, fit_sample=150)
    assert sampled.codes.shape == whole.codes.shape and not torch.equal(sampled.codes, whole.codes)
    assert torch.unique(sampled.codes, dim=0).size(0) == 600  # every item coded, none shared
    assert torch.equal(sampled.quantizer.encode_codes(items), sampled.codes[:, :2])  # the saved codes are its own
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="fit_sample"):
            fit_quantizer(items, config, epochs=1, fit_sample=bad)


def test_fit_rejects_embeddings_of_the_wrong_width(title_embeddings):
    from sidrec.training.fit_quantizer import fit_quantizer

    with pytest.raises(ValueError, match="input_dim"):
        fit_quantizer(title_embeddings[:10], SemanticIDQuantizerConfig(input_dim=768), epochs=1)


def test_save_load_gives_identical_codes(fitted, title_embeddings, tmp_path):
    fitted.quantizer.save_pretrained(tmp_path)
    loaded = SemanticIDQuantizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode_codes(title_embeddings), fitted.quantizer.encode_codes(title_embeddings))


def test_collision_level_numbers_items_within_groups():
    codes = torch.tensor([[0, 1], [0, 1], [2, 3], [0, 1], [2, 2]])
    assert append_collision_level(codes, 4)[:, 2].tolist() == [0, 1, 0, 2, 0]
    with pytest.raises(ValueError, match="share one semantic ID"):
        append_collision_level(codes, 2)


def test_code_statistics_by_hand():
    codes = torch.tensor([[0, 1], [0, 1], [2, 3], [0, 1], [2, 2]])
    stats = code_statistics(codes, 4)
    assert stats["level0/usage"] == 0.5  # codes 0 and 2 of 4
    assert stats["level0/perplexity"] == pytest.approx(math.exp(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4))))
    assert stats["collision_rate"] == pytest.approx(0.6)  # three items share (0, 1)
    assert stats["max_items_per_code"] == 3


def test_distance_scale_is_the_median_nearest_to_second_gap_by_hand():
    quantizer = hand_quantizer()
    points = torch.tensor([[0.9, 0.7], [0.0, 0.1], [0.5, 0.5]])
    # level 0 gaps: |1.30 - 0.10| = 1.2, |1.81 - 0.01| = 1.8, |0.5 - 0.5| = 0 -> median 1.2
    # level 1 residuals (-0.1, -0.3), (0, 0.1), (0.5, 0.5): gaps 0.09, 0.09, 0.35 -> median 0.09
    scale = quantizer.calibrate_distance_scale(points)
    assert scale.tolist() == pytest.approx([1.2, 0.09], rel=1e-5)
    out = quantizer.assign(points[:1])
    assert out.codes.tolist() == [[1, 1]]  # the nearest code does not depend on the unit
    assert out.probs[0, 0, 1].item() == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-5)  # gap 1.2 = 1 unit


def test_a_memory_mapped_table_fits_and_codes_like_the_tensor(title_embeddings, tmp_path):
    """``EmbeddingShards`` (rows read from shard files on demand) gives ``fit_quantizer`` the same codes
    as the in-memory table, with and without ``fit_sample``, and reads rows like a tensor."""
    from safetensors.torch import save_file

    from sidrec.training.embeddings import EmbeddingShards
    from sidrec.training.fit_quantizer import fit_quantizer

    items = title_embeddings[:600]
    paths = [tmp_path / f"shard-{number}.safetensors" for number in range(3)]
    for path, start in zip(paths, (0, 256, 512), strict=True):  # shards of 256, 256 and 88 rows
        save_file({"embeddings": items[start : start + 256].contiguous()}, str(path))
    table = EmbeddingShards(paths)
    assert table.shape == items.shape and len(table) == 600 and table.dim() == 2
    assert torch.equal(table[:], items) and torch.equal(table[250:520], items[250:520])
    assert torch.equal(table[::7], items[::7])
    index = torch.tensor([[599, 0, 256], [255, 511, 599]])  # across shards, out of order, repeated
    assert torch.equal(table[index], items[index]) and torch.equal(table[torch.tensor([-1])], items[-1:])
    with pytest.raises(IndexError, match="600 rows"):
        table[torch.tensor([600])]
    config = SemanticIDQuantizerConfig(input_dim=384, hidden_dims=[32], latent_dim=8, num_levels=2, codebook_size=32)
    for sample in (None, 150):
        in_memory = fit_quantizer(items, config, epochs=2, seed=3, fit_sample=sample)
        on_disk = fit_quantizer(table, config, epochs=2, seed=3, fit_sample=sample)
        assert torch.equal(on_disk.codes, in_memory.codes)
    save_file({"other": items[:4].contiguous()}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no \\(N, d\\) float32 tensor named 'embeddings'"):
        EmbeddingShards([tmp_path / "other.safetensors"])
