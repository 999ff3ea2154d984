"""The whole run a recipe describes: data -> embeddings -> RQ-VAE codes -> SID-T5 -> evaluation.

``train.py`` (and ``sidrec train``) call :func:`run`; under ``accelerate launch`` every process runs
it, the Trainer shards the batches, and only the main process writes the final artefacts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from peft import PeftModel
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from ..model_cards.card import ADAPTER_DIR, write_model_card
from ..model_cards.plots import plot_training
from ..modeling.configuration_dmrec_t5 import DMRecT5Config
from ..modeling.configuration_sid_t5 import SIDT5Config
from ..modeling.modeling_dmrec_t5 import DMRecT5ForConditionalGeneration
from ..modeling.modeling_sid_t5 import SIDT5ForConditionalGeneration
from ..tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from ..tokenization.semantic_codes import code_statistics
from ..tokenization.tokenization_semantic_id import SemanticIDTokenizer
from .baselines import popularity_ranking
from .collator import SemanticIDCollator
from .data import SequentialData, load_sequential_data
from .embeddings import embed_texts
from .evaluation import evaluate_split
from .finetune import last_examples_per_user, load_base_model, parameter_counts, peft_config, wrap_with_adapter
from .fit_quantizer import QuantizerFit, fit_quantizer
from .joint import JointSIDT5
from .living_codes import LivingCodesCallback
from .metrics import ranking_metrics
from .objectives import build_objectives
from .recipe import Recipe, RecipeError
from .recommender import write_item_table
from .trainer import SIDTrainer
from .uncertainty_decay import UncertaintyDecayCallback, build_uncertainty_decay

# QuantizerRecipe fields that are SemanticIDQuantizerConfig arguments (the rest drive the fit).
QUANTIZER_ARCHITECTURE_KEYS = ("hidden_dims", "latent_dim", "num_levels", "codebook_size", "commitment_beta", "dropout")


def prepare_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to write over a finished run unless asked to, so results are never lost silently."""
    finished = (output_dir / "metrics.json").exists() or (output_dir / "model").exists()
    if finished and not overwrite:
        raise RecipeError(
            f"{output_dir} already holds a run (metrics.json or model/). Choose another output_dir "
            "(e.g. output_dir=runs/my-run) or pass --overwrite_output_dir to replace it."
        )
    if finished and PartialState().is_main_process:
        for name in ("model", ADAPTER_DIR, "checkpoints", "metrics.json"):
            target = output_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def embed_catalogue(recipe: Recipe, data: SequentialData) -> torch.Tensor:
    """Text embeddings (N, d) of every item (cached; the main process computes them first)."""
    state = PartialState()
    with state.main_process_first():
        return embed_texts(
            data.item_texts,
            model_name_or_path=recipe.embeddings.model,
            max_seq_length=recipe.embeddings.max_seq_length,
            batch_size=recipe.embeddings.batch_size,
            cache_dir=recipe.embeddings.cache_dir,
            show_progress_bar=state.is_main_process,
        )


def build_codes(recipe: Recipe, embeddings: torch.Tensor) -> QuantizerFit:
    """Fit the RQ-VAE on the catalogue's embeddings and give every item a unique code."""
    q = recipe.quantizer
    config = SemanticIDQuantizerConfig(
        input_dim=embeddings.size(1),
        **{name: getattr(q, name) for name in QUANTIZER_ARCHITECTURE_KEYS},
    )
    return fit_quantizer(
        embeddings,
        config,
        epochs=q.epochs,
        batch_size=q.batch_size,
        learning_rate=q.learning_rate,
        kmeans_init=q.kmeans_init,
        seed=recipe.seed,
    )


def build_model(
    recipe: Recipe, config: SIDT5Config, fit: QuantizerFit, embeddings: torch.Tensor, tokenizer: SemanticIDTokenizer
) -> tuple[SIDT5ForConditionalGeneration, dict[str, float], list]:
    """The recommender, its per-prefix learning rates and its callbacks.

    TIGER: a plain SID-T5 over the fitted codes. ``joint.enabled`` (DIGER): a :class:`JointSIDT5`
    that holds the quantizer, with the tokenizer's learning rate, the uncertainty-decay schedule and
    the living-codes callback.
    """
    learning_rates = dict(recipe.training.learning_rates)
    joint = recipe.joint
    if recipe.dmrec.enabled:
        dmrec = DMRecT5ForConditionalGeneration(
            DMRecT5Config(
                num_items=embeddings.size(0),
                text_embedding_size=embeddings.size(1),
                latent_size=recipe.dmrec.latent_size,
                meta_hidden_size=recipe.dmrec.meta_hidden_size,
                combine_posteriors=recipe.dmrec.combine_posteriors,
                num_code_levels=config.num_code_levels,
                codebook_size=config.codebook_size,
                **dataclasses.asdict(recipe.model),
            )
        )
        dmrec.set_item_text_embeddings(embeddings)
        return dmrec, learning_rates, []
    if not joint.enabled:
        return SIDT5ForConditionalGeneration(config), learning_rates, []
    decay = build_uncertainty_decay(
        joint.uncertainty_decay, fit.quantizer.config.num_levels, config.codebook_size, **joint.decay_options
    )
    model = JointSIDT5.from_recommender_config(
        config,
        fit.quantizer,
        embeddings,
        fit.codes,
        decay,
        code_temperature=joint.code_temperature,
        hard_switch_epoch=joint.hard_switch_epoch,
        trainable=joint.trainable,
        code_gradient=joint.code_gradient,
        target_gradient=joint.target_gradient,
    )
    learning_rates.setdefault("quantizer.", joint.tokenizer_learning_rate)
    if any(param.requires_grad for param in decay.parameters()):
        learning_rates.setdefault("uncertainty_decay.", joint.sigma_learning_rate)
    callbacks = [UncertaintyDecayCallback(model), LivingCodesCallback(tokenizer, reassign=joint.reassign_codes)]
    return model, learning_rates, callbacks


def build_recommender(recipe: Recipe, data: SequentialData, say=print):
    """A new recommender for ``data``: embeddings -> RQ-VAE codes -> tokenizer -> model.

    Returns the model, its tokenizer, the code statistics, per-prefix learning rates and callbacks.
    """
    embeddings = embed_catalogue(recipe, data)
    fit = build_codes(recipe, embeddings)
    say(fit.summary())
    tokenizer = SemanticIDTokenizer(
        item_codes=fit.codes,
        quantizer=fit.quantizer,
        num_levels=fit.codes.size(1),
        codebook_size=recipe.quantizer.codebook_size,
        num_user_buckets=recipe.model.num_user_buckets,
        max_history=recipe.data.max_history,
    )
    set_seed(recipe.seed)
    config = SIDT5Config(
        num_code_levels=fit.codes.size(1),
        codebook_size=recipe.quantizer.codebook_size,
        **dataclasses.asdict(recipe.model),  # ModelRecipe's fields are SIDT5Config arguments
    )
    model, learning_rates, callbacks = build_model(recipe, config, fit, embeddings, tokenizer)
    return model, tokenizer, fit.stats, learning_rates, callbacks


def load_for_finetuning(recipe: Recipe, data: SequentialData, say=print):
    """The saved model named by ``finetune.from_model``, its tokenizer and its codes' statistics.

    The recipe's ``model`` and quantizer shape are set from the saved model, so the run's
    ``recipe.yaml`` and model card describe the network that was actually fine-tuned.
    """
    model, tokenizer = load_base_model(recipe.finetune.from_model, data)
    if "dmrec" in build_objectives(recipe.training.objectives) and not isinstance(
        model, DMRecT5ForConditionalGeneration
    ):
        raise RecipeError("objective `dmrec` needs a DMRec-T5 base model; finetune.from_model is not one")
    for name in dataclasses.asdict(recipe.model):
        setattr(recipe.model, name, getattr(model.config, name))
    recipe.quantizer.num_levels = tokenizer.num_levels - 1  # the saved codes end with the collision level
    recipe.quantizer.codebook_size = tokenizer.codebook_size
    say(f"Fine-tuning {recipe.finetune.from_model} ({type(model).__name__}, {tokenizer.num_items:,} items)")
    set_seed(recipe.seed)
    return model, tokenizer, code_statistics(tokenizer.item_codes[:, :-1], tokenizer.codebook_size)


def saved_sizes(output_dir: Path) -> dict[str, int]:
    """Bytes of the saved weights: the full model and, for a PEFT run, the adapter alone."""
    files = {"model_bytes": output_dir / "model" / "model.safetensors"}
    files["adapter_bytes"] = output_dir / ADAPTER_DIR / "adapter_model.safetensors"
    return {f"finetune/{name}": path.stat().st_size for name, path in files.items() if path.exists()}


def check_recipe(recipe: Recipe) -> None:
    """Settings that cannot work together, caught before minutes of embedding and fitting."""
    objectives = build_objectives(recipe.training.objectives)
    joint = recipe.joint
    if "dmrec" in objectives and not recipe.dmrec.enabled:
        raise RecipeError(
            "objective `dmrec` matches the Gaussians of DMRec-T5: set `dmrec: {enabled: true}` "
            "(or `task: collaborative` for the Mult-VAE setting)"
        )
    finetune = recipe.finetune
    if (finetune.peft is not None or finetune.train_last is not None) and not finetune.from_model:
        raise RecipeError(
            "finetune.peft and finetune.train_last adapt a saved model: set finetune.from_model to its "
            "directory (e.g. runs/scientific-window-base/model)"
        )
    if finetune.from_model and joint.enabled:
        raise RecipeError(
            "finetune.from_model keeps the saved model's codes: it cannot be combined with joint.enabled (DIGER)"
        )
    if finetune.peft is not None:
        peft_config(finetune.peft)  # a bad method or option fails here, not after loading the data
    if recipe.dmrec.enabled and joint.enabled:
        raise RecipeError("dmrec.enabled and joint.enabled cannot be combined yet: DMRec-T5 trains over static codes")
    if recipe.dmrec.enabled and "dmrec" not in objectives:
        raise RecipeError(
            "dmrec.enabled without the `dmrec` objective leaves the Gaussians unregularised: add "
            "`dmrec: {strategy: mddm, beta: 0.5}` to training.objectives"
        )
    if joint.enabled and joint.trainable and "quantizer" not in objectives:
        raise RecipeError(
            "joint.enabled with a trainable tokenizer needs the RQ-VAE loss to keep the codebooks a quantiser "
            "of the content: add `quantizer: 1.0` to training.objectives (or set joint.trainable: false)"
        )
    if "quantizer" in objectives and not joint.enabled:
        raise RecipeError("objective `quantizer` trains the tokenizer with the recommender: set `joint.enabled: true`")
    if "soda" in objectives and not joint.enabled:
        raise RecipeError(
            "objective `soda` compares the quantizer's item distributions with the decoder's: set joint.enabled: true "
            "(for TIGER's frozen codes also `joint.trainable: false` and `joint.uncertainty_decay: none`)"
        )
    soda = objectives.get("soda")
    if soda is not None and soda.negatives != "in_batch" and recipe.training.num_negatives < 1:
        raise RecipeError(f"soda negatives={soda.negatives!r} samples catalogue items: set training.num_negatives >= 1")
    try:
        build_uncertainty_decay(joint.uncertainty_decay, 1, 2, **joint.decay_options)
    except (TypeError, ValueError) as error:  # unknown strategy, option or value
        message = f"joint.uncertainty_decay={joint.uncertainty_decay!r} with {joint.decay_options}: {error}"
        raise RecipeError(message) from error


def training_arguments(recipe: Recipe, output_dir: Path, overrides: dict[str, Any] | None = None) -> TrainingArguments:
    """``TrainingArguments`` from the recipe; evaluation and saving share one schedule (best model kept)."""
    t = recipe.training
    strategy = "steps" if t.eval_steps else "epoch"
    values = dict(
        output_dir=str(output_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=recipe.evaluation.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler_type,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps,
        save_steps=t.eval_steps,
        logging_steps=t.logging_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        greater_is_better=True,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        report_to="none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    values.update(overrides or {})
    return TrainingArguments(**values)


def with_lengths(split):
    """Add the history length, which ``group_by_length`` batches by to avoid padding short histories."""
    return split.add_column("length", [len(history) for history in split["history"]])


def format_results(metrics: dict[str, float], ks: list[int]) -> str:
    """A small text table of the method against the popularity floor."""
    header = "          " + "  ".join(f"{name}@{k:<3}" for name in ("Recall", "NDCG") for k in ks)
    rows = [header]
    for label, prefix in (("SID-T5   ", "test/"), ("Popularity", "test/popularity/")):
        values = [metrics[f"{prefix}{name}@{k}"] for name in ("recall", "ndcg") for k in ks]
        rows.append(f"{label:<10}" + "  ".join(f"{v:>9.4f}" for v in values))
    return "\n".join(rows)


def start_run(recipe: Recipe, overwrite_output_dir: bool):
    """What every task does first: claim the output directory, set threads and seed.

    Returns the process state, a ``print`` that only the main process speaks through, and the
    output directory.
    """
    state = PartialState()
    say = print if state.is_main_process else (lambda *a, **k: None)
    output_dir = Path(recipe.output_dir)
    prepare_output_dir(output_dir, overwrite_output_dir)
    state.wait_for_everyone()
    if recipe.training.torch_threads:
        torch.set_num_threads(recipe.training.torch_threads)
    set_seed(recipe.seed)
    return state, say, output_dir


def run(recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict[str, Any] | None = None) -> dict:
    """Run a recipe end to end; returns the flat metrics dict also written to ``metrics.json``."""
    if recipe.task == "collaborative":
        from .collaborative_pipeline import run_collaborative

        return run_collaborative(recipe, overwrite_output_dir)
    check_recipe(recipe)
    state, say, output_dir = start_run(recipe, overwrite_output_dir)
    started = time.time()

    data = load_sequential_data(recipe.data, verbose=state.is_main_process)
    if recipe.finetune.from_model:
        model, tokenizer, code_stats = load_for_finetuning(recipe, data, say)
        learning_rates, callbacks = dict(recipe.training.learning_rates), []
    else:
        model, tokenizer, code_stats, learning_rates, callbacks = build_recommender(recipe, data, say)
    model.generation_config.num_beams = recipe.evaluation.num_beams
    say(f"SID-T5: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {model.config.vocab_size}")

    ks = list(recipe.evaluation.ks)
    test_split = data.splits["test"]
    if recipe.evaluation.max_test_users:
        test_split = test_split.select(range(min(recipe.evaluation.max_test_users, len(test_split))))
    base_metrics = {}
    if recipe.finetune.from_model:  # the saved model as it is, on the same test users: what fine-tuning buys
        e = recipe.evaluation
        base = evaluate_split(model, tokenizer, test_split, tuple(ks), e.num_beams, e.batch_size, progress=False)
        base_metrics = {f"test/base/{key}": value for key, value in base.items()}
        say("Base model before fine-tuning: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items() if "@10" in k))
    if recipe.finetune.peft is not None:
        model = wrap_with_adapter(model, recipe.finetune.peft)
    train_split = data.splits["train"]
    if recipe.finetune.train_last is not None:
        last = recipe.finetune.train_last
        train_split = last_examples_per_user(train_split, last)
        say(f"Fine-tuning on the last {last} training examples per user: {len(train_split):,} rows")
    trainer = SIDTrainer(
        model=model,
        args=training_arguments(recipe, output_dir, trainer_overrides),
        train_dataset=with_lengths(train_split),
        eval_dataset=data.splits["validation"],
        processing_class=tokenizer,
        data_collator=SemanticIDCollator(
            tokenizer,
            item_index=bool(getattr(model, "item_inputs", ())),
            num_negatives=recipe.training.num_negatives,
            seed=recipe.seed,
        ),
        objectives=build_objectives(recipe.training.objectives),
        ranking_ks=tuple(ks),
        num_beams=recipe.evaluation.num_beams,
        max_eval_users=recipe.evaluation.max_validation_users,
        learning_rates=learning_rates,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience), *callbacks],
    )
    train_started = time.time()
    train_result = trainer.train()
    train_seconds = time.time() - train_started

    eval_started = time.time()
    test = trainer.evaluate(test_split, metric_key_prefix="test")
    eval_seconds = time.time() - eval_started
    popularity = ranking_metrics(
        popularity_ranking(data.train_item_counts(), len(test_split), max(ks)),
        torch.tensor(test_split["target"]),
        tuple(ks),
    )

    metrics: dict[str, Any] = {f"test/{k[len('test_') :]}": v for k, v in test.items() if k.startswith("test_")}
    metrics.update({f"test/popularity/{k}": v for k, v in popularity.items()})
    metrics.update({f"data/{k}": v for k, v in data.stats().items()})
    metrics.update({f"codes/{k}": v for k, v in code_stats.items()})
    metrics.update(base_metrics)
    if recipe.finetune.from_model:
        metrics.update({f"finetune/{k}": v for k, v in parameter_counts(model).items()})
    if recipe.joint.enabled:  # the codes the model was evaluated and is saved with
        final = code_statistics(tokenizer.item_codes[:, :-1], recipe.quantizer.codebook_size)
        metrics.update({f"codes/final/{k}": v for k, v in final.items()})
    metrics.update(
        {
            "train/loss": train_result.training_loss,
            "train/epochs": trainer.state.epoch,
            "train/steps": trainer.state.global_step,
            "train/processes": state.num_processes,
            "train/seconds": train_seconds,
            "train/examples_per_second": train_result.metrics.get("train_samples_per_second", math.nan),
            "validation/best_ndcg@10": trainer.state.best_metric,
            "test/seconds": eval_seconds,
            "test/users_per_second": len(test_split) / eval_seconds,
            "total/seconds": time.time() - started,
        }
    )

    if state.is_main_process:
        model_dir = output_dir / "model"
        recommender = model.to_recommender() if isinstance(model, JointSIDT5) else model
        if isinstance(model, PeftModel):  # the adapter alone, then the merged model as every run saves it
            model.save_pretrained(str(output_dir / ADAPTER_DIR))
            recommender = model = model.merge_and_unload()
        recommender.save_pretrained(str(model_dir))
        metrics.update(saved_sizes(output_dir))
        tokenizer.save_pretrained(str(model_dir))  # code table + the quantizer that produced it
        write_item_table(model_dir, data.item_ids, data.item_titles)
        plot_training(trainer.state.log_history, output_dir / "training.png", title=recipe.name)
        (output_dir / "recipe.yaml").write_text(_yaml_dump(recipe.to_dict()))
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        card = write_model_card(output_dir)  # model/README.md (+ the plot), from metrics.json and recipe.yaml
        say(
            f"\nTest, {len(test_split):,} users, full ranking over {data.num_items:,} items "
            f"(beam {recipe.evaluation.num_beams}, trie-constrained):"
        )
        say(format_results(metrics, ks))
        say(f"Saved model, tokenizer and model card ({card}) to {model_dir}; metrics to {output_dir / 'metrics.json'}")
        show_recommendations(model, tokenizer, data, recipe.evaluation.show_user, say)
    state.wait_for_everyone()
    return metrics


def show_recommendations(model, tokenizer, data: SequentialData, user: int, say=print, top_k: int = 10) -> None:
    """Print one test user's recent history and top-k recommendations with titles."""
    row = data.splits["test"][user]
    result = model.recommend([row["history"]], tokenizer, top_k=top_k, users=[row["user"]])
    say(f"\nUser {data.user_ids[row['user']]} recently interacted with:")
    for item in row["history"][-5:]:
        say(f"    {data.item_titles[item][:90]}")
    say(f"Held-out next item: {data.item_titles[row['target']][:90]}")
    say(f"Top-{top_k} recommendations:")
    for rank, (item, score) in enumerate(zip(result.items[0].tolist(), result.scores[0].tolist()), start=1):
        mark = "  <- held-out item" if item == row["target"] else ""
        say(f"{rank:>4}. [{score:7.3f}] {data.item_titles[item][:90]}{mark}")


def _yaml_dump(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)
