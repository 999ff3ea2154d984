"""Training at the CPU's speed without changing what is trained: bf16 autocast and length-grouped batches."""

from __future__ import annotations

import pytest
import torch

from sidrec import SIDT5ForConditionalGeneration
from sidrec.training.data import SemanticIDCollator
from sidrec.training.errors import RecipeError
from sidrec.training.methods import build_objectives
from sidrec.training.recipe import check_recipe, load_recipe
from sidrec.training.stages.fitting import training_arguments, with_lengths
from sidrec.training.trainer import SIDTrainer

from .conftest import ROOT, tiny_config

DEMO = ROOT / "configs" / "scientific-tiger-demo.yaml"


def real_batch(tokenizer, scientific, rows: int = 64):
    return SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(rows)])


def test_a_bf16_step_gives_the_fp32_loss_within_two_percent(tokenizer, scientific):
    """bf16 autocast keeps fp32 weights; its loss on real batches stays within 2% of fp32's (measured: < 0.5%)."""
    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer, dropout_rate=0.0)).train()
    batch = real_batch(tokenizer, scientific)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
    fp32 = model(**inputs).loss
    fp32.backward()
    fp32_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(**inputs).loss
    bf16.backward()
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.02)
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in fp32_grads]), torch.cat([p.grad.flatten() for p in model.parameters()]), dim=0
    )
    assert cosine > 0.99  # the same direction of descent


def test_recipe_precision_reaches_the_trainer(tmp_path):
    assert training_arguments(load_recipe(DEMO), tmp_path).bf16 is False
    assert training_arguments(load_recipe(DEMO, ["training.precision=bf16"]), tmp_path).bf16 is True
    with pytest.raises(RecipeError, match="training.precision must be one of"):
        check_recipe(load_recipe(DEMO, ["training.precision=fp16"]))


def test_a_bf16_trainer_step_trains_under_autocast(tokenizer, scientific, tmp_path):
    recipe = load_recipe(DEMO, ["training.precision=bf16"])
    args = training_arguments(
        recipe,
        tmp_path,
        {"max_steps": 2, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False},
    )
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer))
    seen = []
    # On a submodule: accelerate wraps the top-level forward in autocast, inside the module call and its hooks.
    model.encoder.register_forward_hook(lambda module, inputs, output: seen.append(torch.is_autocast_enabled("cpu")))
    trainer = SIDTrainer(
        model=model,
        args=args,
        train_dataset=with_lengths(scientific.splits["train"].select(range(128))),
        processing_class=tokenizer,
        data_collator=SemanticIDCollator(tokenizer),
        objectives=build_objectives({"ce": 1.0}),
    )
    result = trainer.train()
    assert seen and all(seen)  # every forward ran under bf16 autocast
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision, not a bf16 model


def test_the_length_grouped_sampler_visits_every_example_once_per_epoch(tokenizer, scientific, tmp_path):
    recipe = load_recipe(DEMO)
    assert recipe.training.group_by_length
    split = with_lengths(scientific.splits["train"].select(range(3000)))
    trainer = SIDTrainer(
        model=SIDT5ForConditionalGeneration(tiny_config(tokenizer)),
        args=training_arguments(recipe, tmp_path),
        train_dataset=split,
        eval_dataset=scientific.splits["validation"],
        processing_class=tokenizer,
        data_collator=SemanticIDCollator(tokenizer),
        objectives=build_objectives({"ce": 1.0}),
    )
    sampler = trainer._get_train_sampler()
    assert type(sampler).__name__ == "LengthGroupedSampler"
    order = list(iter(sampler))
    assert sorted(order) == list(range(len(split)))  # each example exactly once
    # ...and grouped: the batches' padded widths add up to far less than random batches' would.
    lengths = split["length"]
    size = recipe.training.batch_size

    def padded(indices):
        batches = [indices[start : start + size] for start in range(0, len(indices), size)]
        return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)

    shuffled = torch.randperm(len(split), generator=torch.Generator().manual_seed(0)).tolist()
    assert padded(order) < 0.8 * padded(shuffled)
