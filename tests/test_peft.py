"""PEFT on SID-T5: a LoRA adapter trains, saves, loads and merges without changing recommendations."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from sidrec.training.collator import SemanticIDCollator


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
