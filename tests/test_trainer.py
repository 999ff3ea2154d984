"""SIDTrainer pieces that need no full run: optimizer groups and the objective sum."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

from sidrec import SIDT5ForConditionalGeneration
from sidrec.training.data import SemanticIDCollator
from sidrec.training.methods import build_objectives
from sidrec.training.trainer import SIDTrainer

from .conftest import tiny_config


def make_trainer(tokenizer, tmp_path, **kwargs) -> SIDTrainer:
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer))
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1, report_to="none", use_cpu=True
    )
    return SIDTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=SemanticIDCollator(tokenizer),
        objectives=build_objectives({"ce": 1.0}),
        **kwargs,
    )


def test_learning_rates_by_parameter_prefix(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, learning_rates={"decoder.": 1e-5})
    optimizer = trainer.create_optimizer()
    by_param = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    decayed = set(trainer.get_decay_parameter_names(trainer.model))  # the stock Trainer's split is kept
    assert any("layer_norm" in name for name in set(dict(trainer.model.named_parameters())) - decayed)
    for name, param in trainer.model.named_parameters():
        group = by_param[id(param)]
        assert group["lr"] == (1e-5 if name.startswith("decoder.") else 1e-3), name
        assert group["weight_decay"] == (0.1 if name in decayed else 0.0), name
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(trainer.model.parameters()))


def test_unknown_learning_rate_prefix_is_an_error(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="match no parameter"):
        make_trainer(tokenizer, tmp_path, learning_rates={"quantizer.": 1e-5}).create_optimizer()


def test_compute_loss_weights_the_objectives(tokenizer, scientific, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path)
    batch = SemanticIDCollator(tokenizer)([scientific.splits["train"][i] for i in range(8)])
    trainer.model.eval()
    plain = trainer.compute_loss(trainer.model, batch)
    trainer.objectives["ce"].weight = 0.5
    assert torch.allclose(trainer.compute_loss(trainer.model, batch), 0.5 * plain)
