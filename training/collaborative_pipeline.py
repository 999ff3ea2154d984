"""``task: collaborative``: DMRec's paper setting end to end.

data -> MiniLM item embeddings -> random 3:1:1 split per user -> Mult-VAE (with the meta-network
when the ``dmrec`` strategy is not ``none``) trained with the ``Trainer`` -> Recall/NDCG@k over all
items the user did not train on. ``train.py --config configs/beauty-mult-vae-mddm.yaml`` runs it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import torch
from transformers import EarlyStoppingCallback, set_seed

from ..model_cards.plots import plot_training
from ..modeling.configuration_mult_vae import MultVAEConfig
from ..modeling.modeling_mult_vae import MultVAEForCollaborativeFiltering
from .collaborative import CollaborativeTrainer, ItemSetCollator, random_split
from .data import load_sequential_data
from .objectives import DMRecObjective, build_objectives
from .pipeline import _yaml_dump, embed_catalogue, start_run, training_arguments
from .recipe import Recipe, RecipeError


def dmrec_objective(recipe: Recipe) -> DMRecObjective:
    """The recipe's ``dmrec`` objective; the collaborative task always has one (``none`` = plain Mult-VAE)."""
    objectives = build_objectives(recipe.training.objectives)
    if set(objectives) != {"ce", "dmrec"}:
        raise RecipeError(
            "task: collaborative trains Mult-VAE with `ce` (its multinomial likelihood) and `dmrec` "
            "(strategy none | godm | cpdm | mddm); set training.objectives to "
            "{ce: 1.0, dmrec: {strategy: mddm, beta: 0.5}}"
        )
    return objectives["dmrec"]


def build_mult_vae(recipe: Recipe, num_items: int, embeddings: torch.Tensor | None) -> MultVAEForCollaborativeFiltering:
    """Mult-VAE from the recipe; with ``embeddings`` it carries the meta-network over them."""
    m = recipe.mult_vae
    config = MultVAEConfig(
        num_items=num_items,
        hidden_size=m.hidden_size,
        latent_size=m.latent_size,
        dropout=m.dropout,
        text_embedding_size=0 if embeddings is None else embeddings.size(1),
        meta_hidden_size=m.meta_hidden_size,
        combine_posteriors=m.combine_posteriors,
    )
    model = MultVAEForCollaborativeFiltering(config)
    if embeddings is not None:
        model.set_item_text_embeddings(embeddings)
    return model


def run_collaborative(recipe: Recipe, overwrite_output_dir: bool = False) -> dict[str, Any]:
    """Run a ``task: collaborative`` recipe; returns the flat metrics also written to ``metrics.json``."""
    objective = dmrec_objective(recipe)
    state, say, output_dir = start_run(recipe, overwrite_output_dir)
    started = time.time()

    data = load_sequential_data(recipe.data, verbose=state.is_main_process)
    splits = random_split(data.sequences, tuple(recipe.mult_vae.split), seed=recipe.seed)
    say(
        f"random {':'.join(map(str, recipe.mult_vae.split))} split: "
        + ", ".join(f"{name} {sum(map(len, splits[name]['held_out'])):,}" for name in ("train", "validation", "test"))
        + " interactions"
    )
    embeddings = embed_catalogue(recipe, data) if objective.strategy != "none" else None
    set_seed(recipe.seed)
    model = build_mult_vae(recipe, data.num_items, embeddings)
    say(f"Mult-VAE ({objective.strategy}): {sum(p.numel() for p in model.parameters()):,} parameters")

    steps_per_epoch = math.ceil(len(splits["train"]) / recipe.training.batch_size)
    every = steps_per_epoch * recipe.mult_vae.eval_every_epochs
    args = training_arguments(
        recipe,
        output_dir,
        {
            "eval_strategy": "steps",
            "save_strategy": "steps",
            "eval_steps": every,
            "save_steps": every,
            "metric_for_best_model": "recall@20",
            "train_sampling_strategy": "random",
            "per_device_eval_batch_size": recipe.training.batch_size,
        },
    )
    ks = list(recipe.evaluation.ks)
    trainer = CollaborativeTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=ItemSetCollator(),
        objectives=build_objectives(recipe.training.objectives),
        ranking_ks=tuple(ks),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience)],
    )
    train_started = time.time()
    train_result = trainer.train()
    train_seconds = time.time() - train_started
    test = trainer.evaluate(splits["test"], metric_key_prefix="test")

    metrics: dict[str, Any] = {f"test/{k[len('test_') :]}": v for k, v in test.items() if k.startswith("test_")}
    metrics.update({f"data/{k}": v for k, v in data.stats().items() if not k.endswith("_examples")})
    metrics.update(
        {
            "dmrec/strategy": objective.strategy,
            "dmrec/beta": objective.beta,
            "train/loss": train_result.training_loss,
            "train/epochs": trainer.state.epoch,
            "train/steps": trainer.state.global_step,
            "train/seconds": train_seconds,
            "validation/best_recall@20": trainer.state.best_metric,
            "total/seconds": time.time() - started,
        }
    )
    if state.is_main_process:
        model.save_pretrained(str(output_dir / "model"))
        plot_training(trainer.state.log_history, output_dir / "training.png", title=recipe.name)
        (output_dir / "recipe.yaml").write_text(_yaml_dump(recipe.to_dict()))
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        say(
            f"\nTest, {len(splits['test']):,} users, all items not seen in training: "
            + "  ".join(f"{name}@{k} {metrics[f'test/{name}@{k}']:.4f}" for name in ("recall", "ndcg") for k in ks)
        )
        say(f"Saved the model to {output_dir / 'model'}; metrics to {output_dir / 'metrics.json'}")
    state.wait_for_everyone()
    return metrics
