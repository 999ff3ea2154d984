"""After training: the test ranking against the popularity floor, the flat metrics, the printout."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..data import SequentialData
from ..ranking import PopularityRanker, evaluate_ranker
from ..recipe import EvaluationRecipe


def test_users(data: SequentialData, evaluation: EvaluationRecipe):
    """The test split as evaluated: every user, or the first ``evaluation.max_test_users``."""
    split = data.splits["test"]
    if evaluation.max_test_users:
        split = split.select(range(min(evaluation.max_test_users, len(split))))
    return split


def popularity_metrics(data: SequentialData, test_split, ks: list[int]) -> dict[str, float]:
    """The floor every number stands next to: training-count popularity on the same test users."""
    popularity = evaluate_ranker(PopularityRanker(data.train_item_counts()), test_split, tuple(ks))
    return {f"test/popularity/{key}": value for key, value in popularity.items()}


def target_ranks(ranked: torch.Tensor, targets: list[int]) -> list[int]:
    """Each user's 0-based rank of the held-out item in its ranking, -1 when it is not in the top K.

    Saved with every leave-one-out run (``test_ranks.json``): every per-user metric follows from it
    (hit@k = rank < k, NDCG@k = 1 / log2(rank + 2)), which the results harness's paired test needs.
    """
    hits = ranked == torch.as_tensor(targets)[:, None]
    found = hits.any(dim=1)
    return torch.where(found, hits.int().argmax(dim=1), torch.full_like(found, -1, dtype=torch.long)).tolist()


def held_out_ranks(ranked: torch.Tensor, held_out: list[list[int]]) -> list[list[int]]:
    """Each user's 0-based rank of every held-out item (in the split's order), -1 when not in the top K.

    The item-set counterpart of :func:`target_ranks` (DMRec's 3:1:1 split holds several items a user):
    per-user Recall@k is the share of a user's list below ``k``, as ``ranking_metrics`` counts it.
    """
    rows = ranked.tolist()
    ranks = []
    for row, items in zip(rows, held_out):
        position = {item: rank for rank, item in enumerate(row) if item >= 0}
        ranks.append([position.get(item, -1) for item in items])
    return ranks


def write_test_ranks(output_dir: Path, ranked: torch.Tensor, test_split) -> None:
    """``test_ranks.json``: the users (in test order) and their target ranks (a list per user for item sets)."""
    if "held_out" in test_split.column_names:
        ranks = held_out_ranks(ranked, list(test_split["held_out"]))
    else:
        ranks = target_ranks(ranked, list(test_split["target"]))
    (output_dir / "test_ranks.json").write_text(json.dumps({"users": list(test_split["user"]), "ranks": ranks}))


def prefixed(metrics: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    """``test_recall@10`` -> ``test/recall@10``: the trainer's keys as ``metrics.json`` spells them."""
    return {f"{target}{key[len(source) :]}": value for key, value in metrics.items() if key.startswith(source)}


def _checkpoint_step(checkpoint: str | None) -> int:
    """The global step in a ``checkpoint-<step>`` directory name (0 when there is none)."""
    name = Path(checkpoint).name if checkpoint else ""
    return int(name.split("-")[-1]) if name.startswith("checkpoint-") else 0


def training_figures(trainer, train_result, train_seconds: float, best_metric_name: str) -> dict[str, Any]:
    """What the training loop cost and reached."""
    return {
        "train/loss": train_result.training_loss,
        "train/epochs": trainer.state.epoch,
        "train/steps": trainer.state.global_step,
        "train/processes": trainer.accelerator.num_processes,
        "train/seconds": train_seconds,
        # 0 for a run trained in one go; else the step of the checkpoint its last attempt resumed from
        "train/resumed_from_step": _checkpoint_step(trainer.args.resume_from_checkpoint),
        "train/examples_per_second": train_result.metrics.get("train_samples_per_second", math.nan),
        f"validation/best_{best_metric_name}": trainer.state.best_metric,
    }


def format_results(metrics: dict[str, float], ks: list[int], label: str = "SID-T5") -> str:
    """A small text table of the method against the popularity floor."""
    header = "          " + "  ".join(f"{name}@{k:<3}" for name in ("Recall", "NDCG") for k in ks)
    rows = [header]
    for name_, prefix in ((label, "test/"), ("Popularity", "test/popularity/")):
        values = [metrics[f"{prefix}{name}@{k}"] for name in ("recall", "ndcg") for k in ks]
        rows.append(f"{name_:<10}" + "  ".join(f"{v:>9.4f}" for v in values))
    return "\n".join(rows)


def show_recommendations(model, tokenizer, data: SequentialData, user: int, say=print, top_k: int = 10) -> None:
    """Print one test user's recent history and top-k recommendations with titles (after the run is saved).

    A ``show_user`` past the test split is said and skipped: the printout is a courtesy, and a finished
    run must not fail on it.
    """
    if not 0 <= user < len(data.splits["test"]):
        say(f"evaluation.show_user={user} is not a test user (0..{len(data.splits['test']) - 1}); nothing shown")
        return
    row = data.splits["test"][user]
    result = model.recommend([row["history"]], tokenizer, top_k=top_k, users=[row["user"]])
    say(f"\nUser {data.user_ids[row['user']]} recently interacted with:")
    for item in row["history"][-5:]:
        say(f"    {data.item_titles[item][:90]}")
    say(f"Held-out next item: {data.item_titles[row['target']][:90]}")
    say(f"Top-{top_k} recommendations:")
    for rank, (item, score) in enumerate(zip(result.items[0].tolist(), result.scores[0].tolist()), start=1):
        if item < 0:  # an empty slot: the catalogue holds fewer items than were asked for (-1 is no item)
            break
        mark = "  <- held-out item" if item == row["target"] else ""
        say(f"{rank:>4}. [{score:7.3f}] {data.item_titles[item][:90]}{mark}")
