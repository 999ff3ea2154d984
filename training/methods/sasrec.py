"""SASRec, the classical floor: item-id embeddings and a causal Transformer, full-softmax cross-entropy.

Every generative number stands next to it: on Beauty, public SASRec re-implementations trained with
full cross-entropy reach 0.085-0.092 Recall@10, above TIGER's 0.065. The ``bce`` loss is the
paper's one-negative variant (the TIGER paper's SASRec row). It trains on each user's full
training sequence (the last training row, every position supervised), with the same leave-one-out
validation and test users as the semantic-ID models and the same full-ranking metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import set_seed

from ...modeling.configuration_sasrec import LOSS_TYPES, SASRecConfig
from ...modeling.modeling_sasrec import SASRecForSequentialRecommendation
from ...modeling.pipeline_sequential_recommendation import add_pipeline_code
from ..data import NextItemCollator, load_sequential_data, require_training_examples, write_item_table
from ..errors import RecipeError
from ..finetune import last_examples_per_user
from ..objectives import Objective
from ..ranking import SequenceRanker
from ..recipe import Recipe, refuse_keep_shards
from ..registry import Method, register_method
from ..stages.fitting import with_lengths
from ..stages.results import format_results, popularity_metrics, test_users
from ..stages.run_dir import atomic_directory
from ..tasks import PreparedRun, Task


@dataclass
class SASRecRecipe:
    """``sasrec: {enabled: true}`` trains SASRec instead of a semantic-ID model (no codes are built).

    Defaults are the settings measured on Scientific (issue "Collaborative semantic IDs"): 2 blocks of
    64-d with one head, dropout 0.3. ``max_seq_length`` null takes ``data.max_history``.
    """

    enabled: bool = False
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 1
    dropout: float = 0.3
    loss_type: str = "ce"  # ce: full softmax; bce: one sampled negative per position (the paper)
    max_seq_length: int | None = None


def check_recipe(recipe: Recipe, objectives: dict[str, Objective]) -> None:
    """SASRec has its own loss (``ce`` reads it) and no semantic IDs to combine with other methods."""
    section = recipe.sasrec
    if recipe.evaluation.exclude_history and not (recipe.task == "sequential" and section.enabled):
        raise RecipeError(
            "evaluation.exclude_history ranks without the user's own items, which only SASRec's full ranking "
            "supports (the generative models' beam search and Mult-VAE's item sets have their own protocols): "
            "set sasrec.enabled: true or drop evaluation.exclude_history"
        )
    if not section.enabled:
        return
    if recipe.embeddings.keep_shards:
        refuse_keep_shards("sasrec.enabled")
    if section.loss_type not in LOSS_TYPES:
        raise RecipeError(f"sasrec.loss_type must be one of {LOSS_TYPES}, got {section.loss_type!r}")
    if set(objectives) != {"ce"}:
        raise RecipeError(
            f"sasrec.enabled trains SASRec on its own loss: set training.objectives to {{ce: 1.0}} "
            f"(got {sorted(objectives)}); the semantic-ID objectives need a semantic-ID model"
        )
    if recipe.joint.enabled or recipe.dmrec.enabled or recipe.finetune.from_model or recipe.task != "sequential":
        raise RecipeError(
            "sasrec.enabled is a model of its own: it cannot be combined with joint.enabled, dmrec.enabled, "
            "finetune.from_model or task: collaborative"
        )
    if section.hidden_size % section.num_heads:
        raise RecipeError(
            f"sasrec.hidden_size {section.hidden_size} must be divisible by num_heads {section.num_heads}"
        )


def build_sasrec(recipe: Recipe, num_items: int) -> SASRecForSequentialRecommendation:
    """SASRec over ``num_items`` items with the recipe's shape."""
    s = recipe.sasrec
    config = SASRecConfig(
        num_items=num_items,
        max_seq_length=s.max_seq_length or recipe.data.max_history,
        hidden_size=s.hidden_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        dropout=s.dropout,
        loss_type=s.loss_type,
    )
    return SASRecForSequentialRecommendation(config)


def run_name(recipe: Recipe) -> str | None:
    """``sasrec`` (full softmax) or ``sasrec-bce``; codes' source suffixes do not apply (it has no codes)."""
    if not recipe.sasrec.enabled:
        return None
    return "sasrec" if recipe.sasrec.loss_type == "ce" else f"sasrec-{recipe.sasrec.loss_type}"


class SASRecTask(Task):
    """SASRec on the same leave-one-out users and full-ranking metrics as the semantic-ID models."""

    def prepare(self, recipe: Recipe, verbose: bool, say, resume_from: str | None) -> PreparedRun:
        data = load_sequential_data(recipe.data, verbose=verbose)
        require_training_examples(data)
        set_seed(recipe.seed)
        model = build_sasrec(recipe, data.num_items)
        say(f"SASRec ({recipe.sasrec.loss_type}): {sum(p.numel() for p in model.parameters()):,} parameters")
        train_split = last_examples_per_user(data.splits["train"], 1)  # each user's full sequence, all supervised
        e = recipe.evaluation
        return PreparedRun(
            model=model,
            train=with_lengths(train_split),
            validation=data.splits["validation"],
            test=test_users(data, e),
            collator=NextItemCollator(model.config.max_seq_length),
            trainer_options={
                "max_eval_users": e.max_validation_users,
                "ranker": lambda trained: SequenceRanker(trained, e.batch_size, e.exclude_history),
            },
            state={"data": data},
        )

    def metrics(self, recipe: Recipe, prepared: PreparedRun, trainer) -> dict:
        data = prepared.state["data"]
        metrics = popularity_metrics(data, prepared.test, list(recipe.evaluation.ks))
        metrics.update({f"data/{k}": v for k, v in data.stats().items()})
        return metrics

    def save(self, recipe: Recipe, prepared: PreparedRun, output_dir: Path) -> dict:
        data = prepared.state["data"]
        with atomic_directory(output_dir / "model") as staging:
            prepared.model.save_pretrained(str(staging))
            write_item_table(staging, data.item_ids, data.item_titles)
            add_pipeline_code(staging)  # pipeline(model=dir, trust_remote_code=True) serves it, sidrec or not
        return {}

    def report(self, recipe: Recipe, prepared: PreparedRun, metrics: dict, card: Path, say) -> None:
        data, output_dir = prepared.state["data"], Path(recipe.output_dir)
        say(f"\nTest, {len(prepared.test):,} users, full ranking over {data.num_items:,} items:")
        say(format_results(metrics, list(recipe.evaluation.ks), label="SASRec"))
        say(
            f"Saved the model and its card ({card}) to {output_dir / 'model'}; metrics to {output_dir / 'metrics.json'}"
        )


def task(recipe: Recipe) -> SASRecTask | None:
    """SASRec runs a task of its own: item ids instead of semantic IDs, ranked over the whole catalogue."""
    return SASRecTask() if recipe.sasrec.enabled else None


METHOD = register_method(
    Method(name="sasrec", sections={"sasrec": SASRecRecipe}, check=check_recipe, run_name=run_name, task=task)
)
