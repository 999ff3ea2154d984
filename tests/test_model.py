"""SID-T5: fast recommend == stock constrained generate; valid, distinct items; save/load; portability."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM

from sidrec import SIDT5ForConditionalGeneration

from .conftest import tiny_config


def histories(scientific, count=24):
    test = scientific.splits["test"]
    return [test[i]["history"] for i in range(count)]


@pytest.fixture(scope="module")
def trained_model(tokenizer, scientific):
    """A tiny model fitted for a few steps, so that scores are peaked like a real model's."""
    from sidrec.training.data import SemanticIDCollator

    torch.manual_seed(1)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    collate = SemanticIDCollator(tokenizer)
    train = scientific.splits["train"]
    for step in range(30):
        batch = collate([train[i] for i in range(step * 64, step * 64 + 64)])
        batch.pop("target_items")
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.generation_config.num_beams = 10
    return model.eval()


def test_fast_recommend_matches_stock_constrained_generate(trained_model, tokenizer, scientific):
    hist = histories(scientific)
    fast = trained_model.recommend(hist, tokenizer, top_k=10, num_beams=10)
    stock = trained_model.recommend_with_generate(hist, tokenizer, top_k=10, num_beams=10)
    assert torch.equal(fast.items, stock.items)
    assert torch.allclose(fast.scores, stock.scores, atol=1e-4)


def test_recommendations_are_valid_distinct_and_sorted(trained_model, tokenizer, scientific):
    result = trained_model.recommend(histories(scientific, 64), tokenizer, top_k=20, num_beams=20)
    items = result.items
    assert ((items >= 0) & (items < tokenizer.num_items)).all()
    assert all(len(set(row)) == len(row) for row in items.tolist())
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()


def test_recommend_batches_give_the_same_answer(trained_model, tokenizer, scientific):
    hist = histories(scientific, 20)
    whole = trained_model.recommend(hist, tokenizer, top_k=5)
    pieces = trained_model.recommend(hist, tokenizer, top_k=5, batch_size=3)
    assert torch.equal(whole.items, pieces.items)


def test_bf16_recommend_runs_in_bf16_gives_valid_items_and_agrees_with_fp32(trained_model, tokenizer, scientific):
    seen = []
    hook = trained_model.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    try:
        hist = histories(scientific, 64)
        half = trained_model.recommend(hist, tokenizer, top_k=10, num_beams=10, precision="bf16")
    finally:
        hook.remove()
    assert set(seen) == {torch.bfloat16}  # the matrix products ran in bfloat16
    assert half.scores.dtype == torch.float32  # beam scores accumulate in float32
    items = half.items
    assert ((items >= 0) & (items < tokenizer.num_items)).all()
    assert all(len(set(row)) == len(row) for row in items.tolist())
    full = trained_model.recommend(hist, tokenizer, top_k=10, num_beams=10)
    shared = [len(set(a) & set(b)) / 10 for a, b in zip(full.items.tolist(), items.tolist(), strict=True)]
    assert sum(shared) / len(shared) > 0.8  # bf16 rounding reorders near-ties, not the ranking
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        trained_model.recommend(hist, tokenizer, precision="fp16")


def test_top_k_above_beams_and_mismatched_tokenizer_are_errors(trained_model, tokenizer):
    from sidrec import SemanticIDTokenizer

    with pytest.raises(ValueError, match="num_beams"):
        trained_model.recommend([[1, 2]], tokenizer, top_k=30, num_beams=10)
    other = SemanticIDTokenizer(item_codes=torch.tensor([[0, 0], [0, 1]]), num_levels=2, codebook_size=4)
    with pytest.raises(ValueError, match="does not match"):
        trained_model.recommend([[1]], other)


def test_training_loss_goes_down_on_real_data(tokenizer, scientific):
    from sidrec.training.data import SemanticIDCollator

    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(128)])
    batch.pop("target_items")
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_save_load_identical_recommendations_through_auto_classes(trained_model, tokenizer, scientific, tmp_path):
    from transformers import AutoTokenizer

    trained_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    hist = histories(scientific)
    expected = trained_model.recommend(hist, tokenizer, top_k=10)
    for auto in (AutoModel, AutoModelForSeq2SeqLM):
        loaded = auto.from_pretrained(tmp_path)
        assert isinstance(loaded, SIDT5ForConditionalGeneration)
        got = loaded.recommend(hist, AutoTokenizer.from_pretrained(tmp_path), top_k=10)
        assert torch.equal(got.items, expected.items) and torch.allclose(got.scores, expected.scores)
    assert loaded.generation_config.num_beams == 10


def test_trust_remote_code_without_sidrec(trained_model, tokenizer, scientific, tmp_path):
    """A saved directory carries its code: it loads and recommends where `import sidrec` fails."""
    trained_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    hist = histories(scientific, 4)
    expected = trained_model.recommend(hist, tokenizer, top_k=5).items.tolist()
    script = f"""
import sys
sys.modules["sidrec"] = None  # make `import sidrec` fail
from transformers import AutoModel, AutoTokenizer
try:
    import sidrec
    raise SystemExit("sidrec importable")
except ImportError:
    pass
model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
print(model.recommend({hist!r}, tokenizer, top_k=5).items.tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(expected)
