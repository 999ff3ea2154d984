"""Dropout masks drawn by numpy's SFC64 (training/fast_dropout.py): T5's dropout, its rate, its scaling, its
places in the model and its reproducibility, at a fraction of the cost."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.models.t5.modeling_t5 import eager_attention_forward

from sidrec import SIDT5ForConditionalGeneration
from sidrec.training.data import SemanticIDCollator
from sidrec.training.fast_dropout import (
    FAST_EAGER_ATTENTION,
    FastDropout,
    eager_attention_with_fast_dropout,
    fast_dropout,
    keep_mask,
    use_fast_dropout,
)

from .conftest import tiny_config


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_a_mask_drops_at_the_rate_asked(p):
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), p)
    assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
    dropped = 1 - mask.float().mean().item()
    rate = round(p * 65536) / 65536  # the 16-bit threshold
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / 1e6)  # five standard errors


def test_masks_follow_torch_manual_seed_and_differ_between_calls():
    torch.manual_seed(7)
    first, second = keep_mask((64, 64), 0.1), keep_mask((64, 64), 0.1)
    torch.manual_seed(7)
    assert torch.equal(keep_mask((64, 64), 0.1), first) and torch.equal(keep_mask((64, 64), 0.1), second)
    assert not torch.equal(first, second)


def test_kept_values_and_gradients_are_scaled_like_torch_dropout():
    torch.manual_seed(0)
    x = torch.randn(50, 40, requires_grad=True)
    y = fast_dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x.detach()[kept] / 0.75)  # inverted dropout: 1 / (1 - p)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.75)  # the gradient passes where the value was kept
    assert torch.equal(fast_dropout(x, 0.25, training=False), x) and torch.equal(fast_dropout(x, 0.0), x)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        keep_mask((3,), 1.0)


def test_the_bf16_activation_stays_bf16():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    assert fast_dropout(x, 0.1).dtype == torch.bfloat16


def test_every_dropout_of_sid_t5_is_swapped_and_eager_attention_drops_the_same_way(tokenizer):
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer, dropout_rate=0.1, attn_implementation="eager"))
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert before > 0 and use_fast_dropout(model) == before
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert all(m.p == 0.1 for m in model.modules() if isinstance(m, FastDropout))
    assert model.config._attn_implementation == FAST_EAGER_ATTENTION
    sdpa = SIDT5ForConditionalGeneration(tiny_config(tokenizer, dropout_rate=0.1, attn_implementation="sdpa"))
    use_fast_dropout(sdpa)
    assert sdpa.config._attn_implementation == "sdpa"  # SDPA drops inside its own kernel


def test_the_attention_equals_transformers_eager_without_dropout():
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4) for _ in range(3))
    bias, mask = torch.randn(1, 3, 5, 5), torch.zeros(2, 1, 1, 5)
    mask[0, ..., -1] = torch.finfo(torch.float32).min
    module = torch.nn.Module().eval()
    ours = eager_attention_with_fast_dropout(module, query, key, value, mask, scaling=1.0, position_bias=bias)
    theirs = eager_attention_forward(module, query, key, value, mask, scaling=1.0, position_bias=bias)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    module.train()  # training: the probabilities are dropped by the mask the same seed draws, and rescaled
    torch.manual_seed(3)
    _, weights = eager_attention_with_fast_dropout(module, query, key, value, mask, 1.0, 0.5, bias)
    torch.manual_seed(3)
    expected = theirs[1] * keep_mask(theirs[1].shape, 0.5) / 0.5
    assert (weights == 0).any()
    torch.testing.assert_close(weights, expected, rtol=0, atol=0)


def test_a_swapped_model_in_eval_mode_gives_the_same_logits(tokenizer, scientific):
    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer, dropout_rate=0.1, attn_implementation="eager"))
    batch = SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(16)])
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
    model.eval()
    before = model(**inputs).logits
    use_fast_dropout(model)
    torch.testing.assert_close(model(**inputs).logits, before, rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    first = model(**inputs).loss
    torch.manual_seed(1)
    assert model(**inputs).loss.item() == first.item()  # training draws follow torch's seed
    assert first.item() != pytest.approx(model(**inputs).loss.item(), abs=1e-6)  # and differ between steps
