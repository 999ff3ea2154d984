"""Training at the CPU's speed without changing what is trained: bf16 autocast, length-grouped batches, and
the step's costs that change no number (training/cpu_step.py)."""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import TrainerCallback
from transformers.models.t5.modeling_t5 import T5DenseActDense

from sidrec import SIDT5ForConditionalGeneration
from sidrec.training.cpu_step import keep_freed_memory, restore_freed_memory, skip_autocast_round_trip
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


def test_skipping_t5s_feed_forward_cast_changes_no_number_under_autocast(tokenizer, scientific):
    """bf16 -> fp32 -> bf16 is exact, so the skipped round trip leaves loss and gradients identical."""
    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer, dropout_rate=0.0)).train()
    batch = real_batch(tokenizer, scientific, rows=32)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    before = loss_and_grads()
    blocks = sum(type(m) is T5DenseActDense for m in model.modules())
    assert blocks == 4 and skip_autocast_round_trip(model) == blocks
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    after = loss_and_grads()
    assert torch.equal(after[0], before[0])
    assert all(torch.equal(a, b) for a, b in zip(after[1], before[1], strict=True))
    assert model.state_dict().keys() == state.keys()  # the same weights under the same names


def test_training_keeps_freed_memory_and_skips_the_memory_fill_then_restores_both(
    tokenizer, scientific, tmp_path, monkeypatch
):
    """Inside ``train``: deterministic algorithms on, ``fill_uninitialized_memory`` off, glibc keeping freed
    memory; afterwards all as before."""
    import sidrec.training.trainer as trainer_module

    seen, allocator = [], []
    keep, restore = keep_freed_memory, restore_freed_memory
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: allocator.append("keep") or keep())
    monkeypatch.setattr(trainer_module, "restore_freed_memory", lambda: allocator.append("restore") or restore())

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(
                (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
            )
            allocator.append("step")

    args = training_arguments(
        load_recipe(DEMO),
        tmp_path,
        {"max_steps": 2, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False},
    )
    trainer = SIDTrainer(
        model=SIDT5ForConditionalGeneration(tiny_config(tokenizer)),
        args=args,
        train_dataset=with_lengths(scientific.splits["train"].select(range(128))),
        processing_class=tokenizer,
        data_collator=SemanticIDCollator(tokenizer),
        objectives=build_objectives({"ce": 1.0}),
        callbacks=[Probe()],
    )
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    trainer.train()
    assert seen == [(True, False), (True, False)]
    assert (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory) == before
    if sys.platform.startswith("linux"):  # glibc: mallopt took the settings, so they are put back after
        assert allocator == ["keep", "step", "step", "restore"]
