"""No training step reads a value back to the host: `.item()`, `float(t)`, `int(t)` or `.tolist()`.

On a GPU each of those stalls the step until the device catches up. The trainer keeps per-step
figures as detached tensors and averages them at logging steps; the models' bounds checks run only
on CPU tensors. Here every such read raises inside ``compute_loss`` for each kind of model.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import TrainingArguments

from sidrec.training.methods import build_objectives
from sidrec.training.trainer import ObjectiveTrainer

from .conftest import tiny_config
from .test_etegrec import aligned_model
from .test_joint import fresh_tokenizer, joint_model, train_batch


@contextlib.contextmanager
def no_host_reads(device_type: str | None = None):
    """Make every read-back raise; with ``device_type``, tensors also report that device.

    The fake device turns off the checks that run on CPU tensors only (SASRec's bounds check); the T5
    models have none, and transformers' T5 code would try to initialise CUDA if tensors claimed it.
    """

    def refuse(*args, **kwargs):
        raise AssertionError("a host read inside a training step")

    patches = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__float__", "__int__")}
    device = torch.Tensor.device
    try:
        for name in patches:
            setattr(torch.Tensor, name, refuse)
        if device_type is not None:
            torch.Tensor.device = property(lambda self: torch.device(device_type))
        yield
    finally:
        for name, original in patches.items():
            setattr(torch.Tensor, name, original)
        torch.Tensor.device = device


def trainer_for(model, objectives, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, logging_steps=1)
    return ObjectiveTrainer(model=model, args=args, objectives=build_objectives(objectives))


def test_the_refusal_works():
    with no_host_reads(), pytest.raises(AssertionError, match="host read"):
        torch.ones(1).item()


@pytest.mark.parametrize(
    "kind, objectives",
    [
        ("tiger", {"ce": 1.0}),
        ("diger-reference-frqud", {"ce": 1.0, "quantizer": {"weight": 1.0, "balance": 0.1}, "soda": 0.1}),
        ("etegrec", {"ce": 1.0, "quantizer": 1.0, "sia": 1e-4, "psa": 3e-4}),
    ],
)
def test_a_training_step_reads_nothing_back(kind, objectives, fitted, title_embeddings, scientific, tmp_path):
    tokenizer = fresh_tokenizer(fitted)
    if kind == "tiger":
        from sidrec.modeling.modeling_sid_t5 import SIDT5ForConditionalGeneration

        model = SIDT5ForConditionalGeneration(tiny_config(tokenizer))
        batch = train_batch(tokenizer, scientific)
        batch = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
    else:
        if kind == "etegrec":
            model, tokenizer = aligned_model(fitted, title_embeddings)
        else:
            model = joint_model(fitted, title_embeddings, tokenizer, "frqud", mode="reference")
        model.set_epoch(0)
        from sidrec.training.data import SemanticIDCollator

        rows = [scientific.splits["train"][i] for i in range(32)]
        batch = SemanticIDCollator(tokenizer, item_index=True, num_negatives=2, seed=0)(rows)
    trainer = trainer_for(model.train(), objectives, tmp_path)
    with no_host_reads():
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    logs = {"loss": 1.0}
    trainer.log(logs)  # the figures become numbers at the logging step
    assert all(isinstance(logs[f"loss_{name}"], float) for name in objectives)


def test_sasrec_step_reads_back_only_in_its_cpu_bounds_check(scientific, tmp_path):
    import inspect

    from sidrec.training.data import NextItemCollator
    from sidrec.training.methods.sasrec import build_sasrec
    from sidrec.training.recipe import Recipe

    recipe = Recipe()
    recipe.sasrec.enabled, recipe.sasrec.hidden_size = True, 16
    model = build_sasrec(recipe, scientific.num_items).train()
    rows = [scientific.splits["train"][i] for i in range(16)]
    batch = NextItemCollator(max_length=20)(rows)
    trainer = trainer_for(model, {"ce": 1.0}, tmp_path)
    readers = []
    original = torch.Tensor.__int__

    def record(self):
        readers.append(inspect.stack()[1].function)
        return original(self)

    with no_host_reads():
        torch.Tensor.__int__ = record
        trainer.compute_loss(model, batch).backward()
    assert readers and set(readers) == {"_check_item_range"}  # the one read: the bounds check, on CPU
    model._check_item_range(torch.empty(2, 3, dtype=torch.long, device="meta"))  # off the CPU: no read at all
