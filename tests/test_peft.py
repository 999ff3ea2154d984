"""PEFT on SID-T5: a LoRA adapter trains, saves, loads, merges and travels through the Hub unchanged."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from peft import AutoPeftModelForSeq2SeqLM, LoraConfig, PeftModel, get_peft_model
from transformers import AutoModel, AutoTokenizer

from sidrec.hub import HubPushWarning, push_adapter, push_recommender
from sidrec.training.data import SemanticIDCollator


def test_lora_adapter_save_load_and_merge_keep_recommendations(tiny_model, tokenizer, scientific, tmp_path):
    base = copy.deepcopy(tiny_model)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], lora_dropout=0.0, task_type="SEQ_2_SEQ_LM")
    model = get_peft_model(base, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < 0.2 * sum(p.numel() for p in model.parameters())

    # A few real steps so the adapter is not the identity (LoRA's B starts at zero).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    collator = SemanticIDCollator(tokenizer)
    model.train()
    for step in range(5):
        batch = collator([scientific.splits["train"][i] for i in range(32 * step, 32 * step + 32)])
        batch.pop("target_items")
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    histories = [row["history"] for row in scientific.splits["test"].select(range(16))]
    adapted = model.recommend(histories, tokenizer, top_k=5, num_beams=10)
    plain = tiny_model.recommend(histories, tokenizer, top_k=5, num_beams=10)
    assert not torch.equal(adapted.scores, plain.scores)  # the adapter changed the model

    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 100_000
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_model), tmp_path)
    again = loaded.recommend(histories, tokenizer, top_k=5, num_beams=10)
    assert torch.equal(again.items, adapted.items)
    torch.testing.assert_close(again.scores, adapted.scores)

    merged = loaded.merge_and_unload()
    assert type(merged) is type(tiny_model)
    after_merge = merged.recommend(histories, tokenizer, top_k=5, num_beams=10)
    assert torch.equal(after_merge.items, adapted.items)
    torch.testing.assert_close(after_merge.scores, adapted.scores, rtol=1e-4, atol=1e-4)
    # Training touched only the adapter: the frozen base weights are the originals.
    trained = model.get_base_model().state_dict()
    base_after = {k.replace(".base_layer", ""): v for k, v in trained.items() if "lora_" not in k}
    assert base_after.keys() == base_state.keys()
    for name, value in base_state.items():
        torch.testing.assert_close(base_after[name], value, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def saved_lora(tiny_model, tokenizer, scientific, tmp_path_factory):
    """A saved base model directory and a LoRA adapter trained on it for a few real batches."""
    root = tmp_path_factory.mktemp("lora")
    tiny_model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    model = get_peft_model(
        AutoModel.from_pretrained(root / "base"),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], lora_dropout=0.0, task_type="SEQ_2_SEQ_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    collator = SemanticIDCollator(tokenizer)
    for step in range(3):
        batch = collator([scientific.splits["train"][i] for i in range(32 * step, 32 * step + 32)])
        batch.pop("target_items")
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(root / "adapter")
    histories = [row["history"] for row in scientific.splits["test"].select(range(16))]
    expected = model.eval().recommend(histories, tokenizer, top_k=5)
    return root, histories, expected


@pytest.mark.slow
def test_adapter_pushed_beside_its_base_loads_from_an_empty_cache(hub_server, saved_lora, tmp_path):
    root, histories, expected = saved_lora
    base_id, adapter_id = f"{hub_server.user}/tiny-window-base", f"{hub_server.user}/tiny-window-lora"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HubPushWarning)  # the tiny model's 10 beams (tested in test_hub)
        push_recommender(root / "base", base_id)
    local_config = (root / "adapter" / "adapter_config.json").read_text()
    push_adapter(root / "adapter", adapter_id, base_model=base_id)
    assert (root / "adapter" / "adapter_config.json").read_text() == local_config  # only the upload names the Hub id

    base = AutoModel.from_pretrained(base_id, cache_dir=tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(base_id, cache_dir=tmp_path)
    model = PeftModel.from_pretrained(base, adapter_id, cache_dir=tmp_path).eval()
    assert model.peft_config["default"].base_model_name_or_path == base_id
    got = model.recommend(histories, tokenizer, top_k=5)
    assert torch.equal(got.items, expected.items)
    torch.testing.assert_close(got.scores, expected.scores)
    # the adapter repository alone names its base, so peft's Auto class finds both
    auto = AutoPeftModelForSeq2SeqLM.from_pretrained(adapter_id, cache_dir=tmp_path / "auto").eval()
    assert torch.equal(auto.recommend(histories, tokenizer, top_k=5).items, expected.items)


def test_push_adapter_checks_its_directory(hub_server, saved_lora, tmp_path):
    root, *_ = saved_lora
    with pytest.raises(ValueError, match="not a saved PEFT adapter .*adapter_model.safetensors missing"):
        push_adapter(root / "base", f"{hub_server.user}/not-an-adapter")
    with pytest.warns(HubPushWarning, match="names the local base model .* base_model="):
        push_adapter(root / "adapter", f"{hub_server.user}/tiny-window-lora-local")
    uploaded = json.loads(open(f"{root}/adapter/adapter_config.json").read())
    assert uploaded["base_model_name_or_path"] == str(root / "base")


@pytest.mark.parametrize(
    "options",
    [
        {"peft_type": "LORA", "r": 4},
        {"peft_type": "IA3"},
        {"peft_type": "LOHA", "r": 4},
        {"peft_type": "LOKR", "r": 4},
    ],
    ids=lambda options: options["peft_type"],
)
def test_every_layerwise_method_trains_saves_and_merges_on_sid_t5(options, tiny_model, tokenizer, scientific, tmp_path):
    """The recipe's ``finetune.peft`` path for each method: T5 defaults, a real step, save/load, merge."""
    from sidrec.training.finetune import parameter_counts, wrap_with_adapter

    model = wrap_with_adapter(copy.deepcopy(tiny_model), options)
    counts = parameter_counts(model)
    assert 0 < counts["trainable_parameters"] < 0.2 * counts["total_parameters"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    batch = SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(32)])
    batch.pop("target_items")
    for _ in range(2):
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    histories = [row["history"] for row in scientific.splits["test"].select(range(8))]
    adapted = model.eval().recommend(histories, tokenizer, top_k=5)
    assert not torch.equal(adapted.scores, tiny_model.recommend(histories, tokenizer, top_k=5).scores)

    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_model), tmp_path).eval()
    torch.testing.assert_close(loaded.recommend(histories, tokenizer, top_k=5).scores, adapted.scores)
    merged = loaded.merge_and_unload()
    after = merged.recommend(histories, tokenizer, top_k=5)
    assert torch.equal(after.items, adapted.items)
    torch.testing.assert_close(after.scores, adapted.scores, rtol=1e-4, atol=1e-4)
