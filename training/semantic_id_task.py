"""The semantic-ID task: TIGER and every method over it (DIGER, SODA, DMRec-T5, LETTER, ETEGRec, fine-tuning).

data -> embeddings -> RQ-VAE codes -> the method's model -> (the run loop trains and tests it) -> the saved
model with its tokenizer, code table and raw ids. The methods change it only through their registry hooks
(``build_model``, ``code_fit``, ``reads_text``, ...), inside ``stages.models.build_recommender``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import PeftModel

from ..model_cards.card import ADAPTER_DIR
from ..modeling.pipeline_sequential_recommendation import add_pipeline_code
from .data import SemanticIDCollator, load_sequential_data, require_training_examples, write_user_table
from .finetune import last_examples_per_user, parameter_counts, wrap_with_adapter
from .ranking import GenerativeRanker, evaluate_ranker
from .recipe import Recipe
from .stages.fitting import with_lengths
from .stages.models import build_recommender, load_for_finetuning
from .stages.results import format_results, popularity_metrics, show_recommendations, test_users
from .stages.run_dir import atomic_directory, saved_sizes
from .tasks import PreparedRun, Task


class SemanticIDTask(Task):
    """Next-item generation over semantic IDs, ranked by trie-constrained beam search."""

    def prepare(self, recipe: Recipe, verbose: bool, say, resume_from: str | None) -> PreparedRun:
        data = load_sequential_data(recipe.data, verbose=verbose)
        require_training_examples(data)
        if recipe.finetune.from_model:
            built = load_for_finetuning(recipe, data, say)
        else:  # a resumed run reads its codes from the checkpoint instead of fitting them again
            built = build_recommender(recipe, data, say, resume_from)
        model, tokenizer = built.model, built.tokenizer
        model.generation_config.num_beams = recipe.evaluation.num_beams
        say(f"SID-T5: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {model.config.vocab_size}")

        e, ks = recipe.evaluation, tuple(recipe.evaluation.ks)
        test_split = test_users(data, e)
        before: dict[str, Any] = {}
        if recipe.finetune.from_model:  # the saved model as it is, on the same test users: what fine-tuning buys
            base = evaluate_ranker(GenerativeRanker(model, tokenizer, e.num_beams, e.batch_size), test_split, ks)
            say("Base model before fine-tuning: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items() if "@10" in k))
            before.update({f"test/base/{key}": value for key, value in base.items()})
        if recipe.finetune.peft is not None:
            model = wrap_with_adapter(model, recipe.finetune.peft)
        train_split = data.splits["train"]
        if recipe.finetune.train_last is not None:
            train_split = last_examples_per_user(train_split, recipe.finetune.train_last)
            last = recipe.finetune.train_last
            say(f"Fine-tuning on the last {last} training examples per user: {len(train_split):,} rows")
        collator = SemanticIDCollator(
            tokenizer,
            item_index=bool(getattr(model, "item_inputs", ())),
            num_negatives=recipe.training.num_negatives,
            seed=recipe.seed,
        )
        return PreparedRun(
            model=model,
            train=with_lengths(train_split),
            validation=data.splits["validation"],
            test=test_split,
            collator=collator,
            trainer_options={
                "processing_class": tokenizer,
                "num_beams": e.num_beams,
                "max_eval_users": e.max_validation_users,
                "learning_rates": built.learning_rates,
            },
            callbacks=built.callbacks,
            metrics=before,
            state={"data": data, "tokenizer": tokenizer, "code_stats": built.code_stats},
        )

    def metrics(self, recipe: Recipe, prepared: PreparedRun, trainer) -> dict[str, Any]:
        data = prepared.state["data"]
        metrics = popularity_metrics(data, prepared.test, list(recipe.evaluation.ks))
        metrics.update({f"data/{k}": v for k, v in data.stats().items()})
        metrics.update({f"codes/{k}": v for k, v in prepared.state["code_stats"].items()})
        if recipe.finetune.from_model:
            metrics.update({f"finetune/{k}": v for k, v in parameter_counts(prepared.model).items()})
        return metrics

    def save(self, recipe: Recipe, prepared: PreparedRun, output_dir: Path) -> dict[str, Any]:
        data, tokenizer, model = prepared.state["data"], prepared.state["tokenizer"], prepared.model
        # a joint model saves the plain recommender it trained (its code table goes with the tokenizer)
        recommender = model.to_recommender() if hasattr(model, "to_recommender") else model
        if isinstance(model, PeftModel):  # the adapter alone, then the merged model as every run saves it
            with atomic_directory(output_dir / ADAPTER_DIR) as staging:
                model.save_pretrained(str(staging))
            recommender = prepared.model = model.merge_and_unload()
        if tokenizer.item_ids is None:  # a fine-tuned model's tokenizer saved before it carried its items
            tokenizer.set_item_table(data.item_ids, data.item_titles)
        # The model's config names the code table it was trained on: loading it with another run's codes fails.
        recommender.config.code_fingerprint = tokenizer.code_fingerprint
        with atomic_directory(output_dir / "model") as staging:  # a crash while saving leaves no half-written model
            recommender.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))  # code table, its quantizer, and the raw ids (items.jsonl)
            if tokenizer.num_user_buckets:  # serving maps a raw user id to the index its token was hashed from
                write_user_table(staging, data.user_ids)
            add_pipeline_code(staging)  # pipeline(model=dir, trust_remote_code=True) serves it, sidrec or not
        return saved_sizes(output_dir)

    def report(self, recipe: Recipe, prepared: PreparedRun, metrics: dict[str, Any], card: Path, say) -> None:
        data, e = prepared.state["data"], recipe.evaluation
        output_dir = Path(recipe.output_dir)
        decoding = f"beam {e.num_beams}, trie-constrained"
        say(f"\nTest, {len(prepared.test):,} users, full ranking over {data.num_items:,} items ({decoding}):")
        say(format_results(metrics, list(e.ks)))
        say(
            f"Saved model, tokenizer and model card ({card}) to {output_dir / 'model'}; "
            f"metrics to {output_dir / 'metrics.json'}"
        )

    def after(self, recipe: Recipe, prepared: PreparedRun, say) -> None:
        e = recipe.evaluation
        data, tokenizer = prepared.state["data"], prepared.state["tokenizer"]
        show_recommendations(prepared.model, tokenizer, data, e.show_user, say, top_k=min(10, e.num_beams))


__all__ = ["SemanticIDTask"]
