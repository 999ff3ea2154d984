"""DIGER's uncertainty-decay strategies: noise schedules checked against hand-set usage and sigma."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from sidrec import SemanticIDQuantizer, SemanticIDQuantizerConfig
from sidrec.training.methods.diger.uncertainty_decay import (
    AnnealedNoise,
    FrequencyUncertaintyDecay,
    SigmaUncertaintyDecay,
    UncertaintyDecayCallback,
    build_uncertainty_decay,
)


def test_frqud_noise_goes_to_samples_with_a_hot_level0_code():
    frqud = FrequencyUncertaintyDecay(num_levels=2, codebook_size=4)
    frqud.usage[0] = torch.tensor([0.5, 0.3, 0.1, 0.1])  # threshold 1.5 / 4 = 0.375: only code 0 is hot
    codes = torch.tensor([[0, 1], [1, 2], [0, 3]])
    assert frqud.noise_scale(codes).tolist() == [[1.0], [0.0], [1.0]]
    assert frqud.figures()["frqud/hot_fraction"] == pytest.approx(2 / 3)


def test_frqud_ema_update_by_hand():
    frqud = FrequencyUncertaintyDecay(num_levels=2, codebook_size=4)
    frqud.usage[0] = torch.tensor([0.5, 0.3, 0.1, 0.1])
    frqud.update(torch.tensor([[0, 1], [1, 2], [0, 3]]))
    # level 0 batch frequency (2/3, 1/3, 0, 0); level 1 starts uniform and sees (0, 1/3, 1/3, 1/3)
    expected0 = [0.99 * 0.5 + 0.01 * 2 / 3, 0.99 * 0.3 + 0.01 / 3, 0.99 * 0.1, 0.99 * 0.1]
    expected1 = [0.99 * 0.25, 0.99 * 0.25 + 0.01 / 3, 0.99 * 0.25 + 0.01 / 3, 0.99 * 0.25 + 0.01 / 3]
    assert frqud.usage[0].tolist() == pytest.approx(expected0)
    assert frqud.usage[1].tolist() == pytest.approx(expected1)


def test_frqud_noise_fades_once_usage_is_even():
    frqud = FrequencyUncertaintyDecay(num_levels=1, codebook_size=4, momentum=0.5)
    frqud.usage[0] = torch.tensor([0.7, 0.1, 0.1, 0.1])
    codes = torch.tensor([[0], [1], [2], [3]])
    assert frqud.noise_scale(codes).sum() == 1
    for _ in range(10):
        frqud.update(codes)  # perfectly even usage
    assert frqud.noise_scale(codes).sum() == 0


def test_sdud_loss_weighting_by_hand():
    sdud = SigmaUncertaintyDecay(num_levels=2, codebook_size=4)
    spread = 1.0 + 1.7
    assert sdud.weight_loss(torch.tensor(4.0)).item() == pytest.approx(4 / (2 * spread**2) + math.log(spread))
    assert sdud.noise_scale(torch.zeros(3, 2, dtype=torch.long)).tolist() == [1.0, 1.0]


def test_sdud_sigma_moves_to_sqrt_loss_minus_lambda():
    """d/dsigma [L / (2 s^2) + log s] = 0 at s = sqrt(L): sigma = sqrt(L) - lambda."""
    sdud = SigmaUncertaintyDecay(num_levels=3, codebook_size=4)
    optimizer = torch.optim.Adam(sdud.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        sdud.weight_loss(torch.tensor(9.0)).backward()
        optimizer.step()
    assert sdud.sigma.abs().mean().item() == pytest.approx(3.0 - 1.7, abs=1e-2)


def test_annealing_schedule_and_callback():
    anneal = AnnealedNoise(num_levels=3, codebook_size=4, initial=1.0, decay=0.9)
    callback = UncertaintyDecayCallback(anneal)
    state = TrainerState()
    state.epoch = 3.0
    callback.on_epoch_begin(TrainingArguments(output_dir="unused", report_to="none"), state, TrainerControl())
    assert anneal.noise_scale(torch.zeros(2, 3, dtype=torch.long)).item() == pytest.approx(0.9**3)


@pytest.mark.parametrize("name", ["none", "frqud", "anneal", "sdud"])
def test_every_strategy_plugs_into_the_assignment_function(name):
    torch.manual_seed(0)
    quantizer = SemanticIDQuantizer(
        SemanticIDQuantizerConfig(input_dim=6, hidden_dims=[], latent_dim=4, num_levels=3, codebook_size=5)
    )
    strategy = build_uncertainty_decay(name, num_levels=3, codebook_size=5)
    latent = quantizer.encoder(torch.randn(16, 6))
    nearest = quantizer.assign(latent).codes
    out = quantizer.assign(latent, mode="gumbel", noise_scale=strategy.noise_scale(nearest))
    assert out.codes.shape == (16, 3)
    if name == "none":
        assert torch.equal(out.codes, nearest)  # no noise: Gumbel mode is the nearest code
    if name == "frqud":  # uniform start: nobody is hot yet, so every sample is assigned deterministically
        assert torch.equal(out.codes, nearest)
    if name == "sdud":
        out.quantized.sum().backward()
        assert strategy.sigma.grad is not None and strategy.sigma.grad.abs().sum() > 0


def test_unknown_strategy_and_bad_anneal_options():
    with pytest.raises(ValueError, match="unknown uncertainty decay 'sdd'"):
        build_uncertainty_decay("sdd", 3, 4)
    with pytest.raises(ValueError, match="decay"):
        AnnealedNoise(3, 4, decay=1.5)


def test_frqud_scale_sets_the_noise_of_hot_samples():
    frqud = FrequencyUncertaintyDecay(num_levels=2, codebook_size=4, scale=0.1)
    frqud.usage[0] = torch.tensor([0.5, 0.3, 0.1, 0.1])
    torch.testing.assert_close(frqud.noise_scale(torch.tensor([[0, 1], [1, 2]])), torch.tensor([[0.1], [0.0]]))
    with pytest.raises(ValueError, match="scale >= 0"):
        FrequencyUncertaintyDecay(num_levels=2, codebook_size=4, scale=-1.0)
