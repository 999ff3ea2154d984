"""The whole run a recipe describes, read top to bottom; each step is a stage in ``stages/``.

``train.py`` (and ``sidrec train``) call :func:`run`; under ``accelerate launch`` every process runs
it, the Trainer shards the batches, and only the main process writes the final artefacts.

- ``task: sequential`` (TIGER, DIGER, SODA, DMRec-T5, fine-tuning): data -> embeddings -> RQ-VAE
  codes -> the method's model -> ``SIDTrainer`` -> full-ranking test -> saved run with its card.
- ``sasrec.enabled`` (the ID-based floor): data -> SASRec on each user's full training sequence ->
  ``SIDTrainer`` with a sequence ranker -> the same leave-one-out test -> saved run.
- ``task: collaborative`` (DMRec's Mult-VAE setting): data -> random 3:1:1 split -> Mult-VAE ->
  ``SIDTrainer`` with an item-set ranker -> test -> saved run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import EarlyStoppingCallback, set_seed

from ..model_cards.card import ADAPTER_DIR, write_model_card
from ..tokenization.semantic_codes import code_statistics
from .data import (
    NextItemCollator,
    SemanticIDCollator,
    load_sequential_data,
    random_split,
    require_training_examples,
    write_item_table,
    write_user_table,
)
from .data.item_sets import ItemSetCollator
from .data.item_table import read_item_table
from .finetune import last_examples_per_user, parameter_counts, wrap_with_adapter
from .methods import build_objectives, method_name
from .methods.diger import JointSIDT5
from .methods.dmrec import build_mult_vae, collaborative_objective
from .methods.sasrec import build_sasrec
from .ranking import GenerativeRanker, ItemSetRanker, SequenceRanker, evaluate_ranker
from .recipe import Recipe, check_recipe, collaborative_recipe
from .stages.codes import build_codes, embed_catalogue
from .stages.fitting import train_and_test, training_arguments, with_lengths
from .stages.models import build_recommender, load_for_finetuning
from .stages.results import (
    format_results,
    popularity_metrics,
    prefixed,
    show_recommendations,
    test_users,
    training_figures,
    write_test_ranks,
)
from .stages.run_dir import atomic_directory, exclusive_directory, saved_sizes, start_run, write_run_files
from .trainer import SIDTrainer

__all__ = ["build_codes", "embed_catalogue", "run", "run_collaborative", "run_sasrec", "run_sequential"]


def run(recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict[str, Any] | None = None) -> dict:
    """Run a recipe end to end; returns the flat metrics dict also written to ``metrics.json``."""
    check_recipe(recipe)
    if recipe.task == "collaborative":
        return run_collaborative(recipe, overwrite_output_dir, trainer_overrides)
    if recipe.sasrec.enabled:
        return run_sasrec(recipe, overwrite_output_dir, trainer_overrides)
    return run_sequential(recipe, overwrite_output_dir, trainer_overrides)


def ensure_collaborative_run(recipe: Recipe, say=print) -> None:
    """Point ``embeddings.collaborative_run`` at the cached SASRec of ``collaborative_recipe``, training it once.

    A folder with a saved model and ``metrics.json`` is finished and reused; anything else (absent, or a run
    that was interrupted) is trained from the start. Does nothing when the recipe names a run itself.
    Runs started side by side (a grid's lanes) share the cache: the first trains it while the others wait
    and then read it (``exclusive_directory``).
    """
    if recipe.embeddings.collaborative_run or not recipe.embeddings.collaborative_recipe:
        return
    sasrec = collaborative_recipe(recipe)
    output_dir = Path(sasrec.output_dir)
    with exclusive_directory(output_dir, say=lambda message: say(f"Collaborative embeddings: {message}")):
        if (output_dir / "metrics.json").exists() and read_item_table(output_dir / "model") is not None:
            say(f"Collaborative embeddings: the cached SASRec run {output_dir}")
        else:
            say(f"Collaborative embeddings: training {recipe.embeddings.collaborative_recipe} into {output_dir}")
            run(sasrec, overwrite_output_dir=True)
    recipe.embeddings.collaborative_run = str(output_dir)


def run_sequential(recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict | None = None) -> dict:
    """Next-item generation over semantic IDs: every method but DMRec's Mult-VAE setting."""
    ensure_collaborative_run(recipe)  # a SASRec of collaborative_recipe, trained before this run starts
    state, say, output_dir = start_run(recipe, overwrite_output_dir)
    started = time.time()
    data = load_sequential_data(recipe.data, verbose=state.is_main_process)
    require_training_examples(data)
    if recipe.finetune.from_model:
        built = load_for_finetuning(recipe, data, say)
    else:  # a resumed run reads its codes from the checkpoint instead of fitting them again
        built = build_recommender(recipe, data, say, (trainer_overrides or {}).get("resume_from_checkpoint"))
    model, tokenizer = built.model, built.tokenizer
    model.generation_config.num_beams = recipe.evaluation.num_beams
    say(f"SID-T5: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {model.config.vocab_size}")

    e, ks = recipe.evaluation, list(recipe.evaluation.ks)
    test_split = test_users(data, e)
    metrics: dict[str, Any] = {"run/method": method_name(recipe)}
    if recipe.finetune.from_model:  # the saved model as it is, on the same test users: what fine-tuning buys
        base = evaluate_ranker(GenerativeRanker(model, tokenizer, e.num_beams, e.batch_size), test_split, tuple(ks))
        say("Base model before fine-tuning: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items() if "@10" in k))
        metrics.update({f"test/base/{key}": value for key, value in base.items()})
    if recipe.finetune.peft is not None:
        model = wrap_with_adapter(model, recipe.finetune.peft)
    train_split = data.splits["train"]
    if recipe.finetune.train_last is not None:
        train_split = last_examples_per_user(train_split, recipe.finetune.train_last)
        last = recipe.finetune.train_last
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
        num_beams=e.num_beams,
        max_eval_users=e.max_validation_users,
        learning_rates=built.learning_rates,
        deterministic=recipe.training.deterministic,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience)]
        + built.callbacks,
    )
    train_result, train_seconds, test, eval_seconds = train_and_test(trainer, test_split)

    metrics.update(prefixed(test, "test_", "test/"))
    metrics.update(popularity_metrics(data, test_split, ks))
    metrics.update({f"data/{k}": v for k, v in data.stats().items()})
    metrics.update({f"codes/{k}": v for k, v in built.code_stats.items()})
    if recipe.finetune.from_model:
        metrics.update({f"finetune/{k}": v for k, v in parameter_counts(model).items()})
    if recipe.joint.enabled:  # the codes the model was evaluated and is saved with
        final = code_statistics(tokenizer.item_codes[:, :-1], recipe.quantizer.codebook_size)
        metrics.update({f"codes/final/{k}": v for k, v in final.items()})
        if isinstance(model, JointSIDT5):  # share of items whose codes moved: last re-assignment and since the start
            metrics.update({f"codes/final/{k}": v for k, v in model.code_churn().items()})
    metrics.update(training_figures(trainer, train_result, train_seconds, "ndcg@10"))
    metrics.update(
        {
            "test/seconds": eval_seconds,
            "test/users_per_second": len(test_split) / eval_seconds,
            "total/seconds": time.time() - started,
        }
    )

    if state.is_main_process:
        model_dir = output_dir / "model"
        recommender = model.to_recommender() if isinstance(model, JointSIDT5) else model
        if isinstance(model, PeftModel):  # the adapter alone, then the merged model as every run saves it
            with atomic_directory(output_dir / ADAPTER_DIR) as staging:
                model.save_pretrained(str(staging))
            recommender = model = model.merge_and_unload()
        if tokenizer.item_ids is None:  # a fine-tuned model's tokenizer saved before it carried its items
            tokenizer.set_item_table(data.item_ids, data.item_titles)
        # The model's config names the code table it was trained on: loading it with another run's codes fails.
        recommender.config.code_fingerprint = tokenizer.code_fingerprint
        with atomic_directory(model_dir) as staging:  # a crash while saving leaves no half-written model
            recommender.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))  # code table, its quantizer, and the raw ids (items.jsonl)
            if tokenizer.num_user_buckets:  # serving maps a raw user id to the index its token was hashed from
                write_user_table(staging, data.user_ids)
        metrics.update(saved_sizes(output_dir))
        write_run_files(output_dir, recipe, metrics, trainer.state.log_history)
        write_test_ranks(output_dir, trainer.last_rankings, test_split)
        card = write_model_card(output_dir)  # model/README.md (+ the plot), from metrics.json and recipe.yaml
        decoding = f"beam {e.num_beams}, trie-constrained"
        say(f"\nTest, {len(test_split):,} users, full ranking over {data.num_items:,} items ({decoding}):")
        say(format_results(metrics, ks))
        say(f"Saved model, tokenizer and model card ({card}) to {model_dir}; metrics to {output_dir / 'metrics.json'}")
    state.wait_for_everyone()  # every process is done before the optional printout, which cannot fail a run
    if state.is_main_process:
        show_recommendations(model, tokenizer, data, e.show_user, say, top_k=min(10, e.num_beams))
    return metrics


def run_sasrec(recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict | None = None) -> dict:
    """SASRec on the same leave-one-out users and full-ranking metrics as the semantic-ID models."""
    state, say, output_dir = start_run(recipe, overwrite_output_dir)
    started = time.time()
    data = load_sequential_data(recipe.data, verbose=state.is_main_process)
    require_training_examples(data)
    set_seed(recipe.seed)
    model = build_sasrec(recipe, data.num_items)
    say(f"SASRec ({recipe.sasrec.loss_type}): {sum(p.numel() for p in model.parameters()):,} parameters")
    train_split = last_examples_per_user(data.splits["train"], 1)  # each user's full sequence, every step supervised
    e, ks = recipe.evaluation, list(recipe.evaluation.ks)
    test_split = test_users(data, e)
    trainer = SIDTrainer(
        model=model,
        args=training_arguments(recipe, output_dir, trainer_overrides),
        train_dataset=with_lengths(train_split),
        eval_dataset=data.splits["validation"],
        data_collator=NextItemCollator(model.config.max_seq_length),
        objectives=build_objectives(recipe.training.objectives),
        ranking_ks=tuple(ks),
        max_eval_users=e.max_validation_users,
        ranker=lambda trained: SequenceRanker(trained, e.batch_size, e.exclude_history),
        deterministic=recipe.training.deterministic,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience)],
    )
    train_result, train_seconds, test, eval_seconds = train_and_test(trainer, test_split)

    metrics: dict[str, Any] = {"run/method": method_name(recipe), **prefixed(test, "test_", "test/")}
    metrics.update(popularity_metrics(data, test_split, ks))
    metrics.update({f"data/{k}": v for k, v in data.stats().items()})
    metrics.update(training_figures(trainer, train_result, train_seconds, "ndcg@10"))
    metrics.update({"test/seconds": eval_seconds, "total/seconds": time.time() - started})
    if state.is_main_process:
        with atomic_directory(output_dir / "model") as staging:
            model.save_pretrained(str(staging))
            write_item_table(staging, data.item_ids, data.item_titles)
        write_run_files(output_dir, recipe, metrics, trainer.state.log_history)
        write_test_ranks(output_dir, trainer.last_rankings, test_split)
        card = write_model_card(output_dir)  # SASRec's own card (baseline_card.py)
        say(f"\nTest, {len(test_split):,} users, full ranking over {data.num_items:,} items:")
        say(format_results(metrics, ks, label="SASRec"))
        say(
            f"Saved the model and its card ({card}) to {output_dir / 'model'}; metrics to {output_dir / 'metrics.json'}"
        )
    state.wait_for_everyone()
    return metrics


def run_collaborative(
    recipe: Recipe, overwrite_output_dir: bool = False, trainer_overrides: dict | None = None
) -> dict[str, Any]:
    """DMRec's paper setting: Mult-VAE on a random 3:1:1 split, ranked over every item not trained on."""
    objective = collaborative_objective(recipe)
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

    batch_size = recipe.training.batch_size
    every = -(-len(splits["train"]) // batch_size) * recipe.mult_vae.eval_every_epochs  # steps between evaluations
    schedule = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": every, "save_steps": every}
    args = training_arguments(
        recipe,
        output_dir,
        {
            **schedule,
            "metric_for_best_model": "recall@20",
            "train_sampling_strategy": "random",
            "per_device_eval_batch_size": batch_size,
            **(trainer_overrides or {}),
        },
    )
    ks = list(recipe.evaluation.ks)
    trainer = SIDTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=ItemSetCollator(),
        objectives=build_objectives(recipe.training.objectives),
        ranking_ks=tuple(ks),
        ranker=lambda trained: ItemSetRanker(trained, batch_size),
        deterministic=recipe.training.deterministic,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience)],
    )
    train_result, train_seconds, test, _ = train_and_test(trainer, splits["test"])

    metrics: dict[str, Any] = {"run/method": method_name(recipe), **prefixed(test, "test_", "test/")}
    metrics.update({f"data/{k}": v for k, v in data.stats().items() if not k.endswith("_examples")})
    metrics.update({"dmrec/strategy": objective.strategy, "dmrec/beta": objective.beta})
    figures = training_figures(trainer, train_result, train_seconds, "recall@20")
    metrics.update({k: v for k, v in figures.items() if k not in ("train/processes", "train/examples_per_second")})
    metrics["total/seconds"] = time.time() - started
    if state.is_main_process:
        with atomic_directory(output_dir / "model") as staging:
            model.save_pretrained(str(staging))
        write_run_files(output_dir, recipe, metrics, trainer.state.log_history)
        write_test_ranks(output_dir, trainer.last_rankings, splits["test"])  # per held-out item, for paired tests
        write_model_card(output_dir)  # Mult-VAE's own card (baseline_card.py)
        say(
            f"\nTest, {len(splits['test']):,} users, all items not seen in training: "
            + "  ".join(f"{name}@{k} {metrics[f'test/{name}@{k}']:.4f}" for name in ("recall", "ndcg") for k in ks)
        )
        say(f"Saved the model to {output_dir / 'model'}; metrics to {output_dir / 'metrics.json'}")
    state.wait_for_everyone()
    return metrics
