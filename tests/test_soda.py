"""SODA: the distribution-level BPR objective, by hand on a toy and on real Scientific batches."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sidrec.training.data import SemanticIDCollator
from sidrec.training.methods import build_objectives

from .test_joint import fresh_tokenizer, joint_model, train_batch

SPECIAL = 3


def toy_outputs(item_logits: list, user_logits: list) -> SimpleNamespace:
    """2 users x 2 levels x 3 codes: items' code logits and the decoder's logits laid out in a vocabulary."""
    item = torch.tensor(item_logits)
    vocabulary = torch.full((2, 2, SPECIAL + 2 * 3), -30.0)  # other tokens: never likely
    for level in range(2):
        vocabulary[:, level, SPECIAL + 3 * level : SPECIAL + 3 * (level + 1)] = torch.tensor(user_logits)[:, level]
    return SimpleNamespace(target_code_logits=item, logits=vocabulary, negative_code_logits=None)


def softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


ITEMS = [[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[-1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]]
USERS = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, -1.0]]]


@pytest.mark.parametrize("direction", ["item_to_user", "user_to_item"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soda_loss_equals_the_hand_computed_value(direction, temperature):
    soda = build_objectives({"soda": {"temperature": temperature, "direction": direction}})["soda"]
    loss, figures = soda(None, {"target_items": torch.tensor([0, 1])}, toy_outputs(ITEMS, USERS))

    def score(user: int, item: int) -> float:
        total = 0.0
        for level in range(2):
            p, q = softmax(ITEMS[item][level], temperature), softmax(USERS[user][level])
            total -= kl(p, q) if direction == "item_to_user" else kl(q, p)
        return total

    # each user's positive is its own row's item; the other row's item is its one in-batch negative
    pairs = [score(0, 0) - score(0, 1), score(1, 1) - score(1, 0)]
    expected = sum(math.log(1 + math.exp(-margin)) for margin in pairs) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert figures["soda/pair_accuracy"] == pytest.approx(sum(m > 0 for m in pairs) / 2)


def test_a_shared_target_is_never_its_own_negative():
    soda = build_objectives({"soda": 1.0})["soda"]
    loss, _ = soda(None, {"target_items": torch.tensor([4, 4])}, toy_outputs(ITEMS, USERS))
    assert loss.item() == 0.0  # no valid pair left


def test_raising_the_positives_predicted_probability_lowers_the_loss():
    soda = build_objectives({"soda": 1.0})["soda"]
    before, _ = soda(None, {"target_items": torch.tensor([0, 1])}, toy_outputs(ITEMS, USERS))
    sharper = [[list(level) for level in user] for user in USERS]
    sharper[0][0][0] += 2.0  # user 0 predicts item 0's most likely level-0 code more strongly
    after, _ = soda(None, {"target_items": torch.tensor([0, 1])}, toy_outputs(ITEMS, sharper))
    assert after.item() < before.item()


@pytest.mark.parametrize("trainable", [True, False])
def test_soda_gradient_reaches_the_decoder_and_a_trainable_tokenizer(fitted, title_embeddings, scientific, trainable):
    tokenizer = fresh_tokenizer(fitted)
    model = joint_model(fitted, title_embeddings, tokenizer, trainable=trainable).train()
    batch = train_batch(tokenizer, scientific, size=32)
    batch["negative_items"] = SemanticIDCollator(tokenizer, num_negatives=3).sample_negatives(batch["target_items"])
    soda = build_objectives({"soda": {"negatives": "both"}})["soda"]
    loss, _ = soda(model, batch, model(**batch))
    loss.backward()
    assert loss.item() > 0
    assert model.decoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0
    codebook_grad = model.quantizer.codebooks.grad
    if trainable:
        assert all(codebook_grad[level].abs().sum() > 0 for level in range(3))
    else:
        assert codebook_grad is None


def test_sampled_negatives_are_catalogue_items_other_than_the_target(tokenizer):
    collator = SemanticIDCollator(tokenizer, num_negatives=50, seed=1)
    targets = torch.tensor([0, 5, tokenizer.num_items - 1])
    negatives = collator.sample_negatives(targets)
    assert negatives.shape == (3, 50)
    assert ((negatives >= 0) & (negatives < tokenizer.num_items)).all()
    assert (negatives != targets[:, None]).all()


def test_soda_without_the_joint_model_or_with_bad_options_is_a_clear_error(tiny_model, tokenizer, scientific):
    batch = SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(4)])
    items = batch.pop("target_items")
    with pytest.raises(ValueError, match="joint: {enabled: true}"):
        build_objectives({"soda": 1.0})["soda"](tiny_model, {"target_items": items}, tiny_model(**batch))
    with pytest.raises(ValueError, match="direction in"):
        build_objectives({"soda": {"direction": "sideways"}})
