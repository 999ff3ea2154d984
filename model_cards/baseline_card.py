"""Model cards for the classical item-ID baselines: SASRec and Mult-VAE (plain or with DMRec's matching).

They share the semantic-ID card's sources (``recipe.yaml``, ``metrics.json``, the run's plot) and its
results table, but not its content: no codes, no beam search, another usage snippet and other papers.
:func:`sidrec.model_cards.card.write_model_card` picks this card for these methods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from .card_parts import (
    PLOT_FILE,
    RANKING_METRICS,
    TAGS,
    _count_parameters,
    _dataset_info,
    _eval_results,
    _fmt,
    _method,
    _plot_source,
)

BASELINE_TEMPLATE_PATH = Path(__file__).with_name("baseline_template.md")
BASELINE_TAGS = [tag for tag in TAGS if tag != "semantic-ids"]
CITATIONS = {
    "sasrec": """@inproceedings{kang2018sasrec,
  title     = {Self-Attentive Sequential Recommendation},
  author    = {Kang, Wang-Cheng and McAuley, Julian},
  booktitle = {IEEE International Conference on Data Mining (ICDM)},
  year      = {2018}
}""",
    "mult-vae": """@inproceedings{liang2018multvae,
  title     = {Variational Autoencoders for Collaborative Filtering},
  author    = {Liang, Dawen and Krishnan, Rahul G. and Hoffman, Matthew D. and Jebara, Tony},
  booktitle = {The Web Conference (WWW)},
  year      = {2018}
}""",
    "dmrec": """@inproceedings{zhang2025dmrec,
  title     = {Towards Distribution Matching between Collaborative and Language Spaces for Generative Recommendation},
  author    = {Zhang, Yi and others},
  booktitle = {Proceedings of the 48th International {ACM} {SIGIR} Conference on Research and Development in
               Information Retrieval},
  year      = {2025}
}""",
}


def is_baseline(recipe: dict[str, Any]) -> bool:
    """Whether a run's recipe trains an item-ID baseline (SASRec or Mult-VAE) rather than a semantic-ID model."""
    return _method(recipe)[0].startswith(("sasrec", "mult-vae"))


def render_baseline_card(run_dir: Path, repo_id: str | None = None) -> ModelCard:
    """The card of a finished SASRec or Mult-VAE run (``run_dir`` already resolved by the caller)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recipe_text = (run_dir / "recipe.yaml").read_text()
    recipe = yaml.safe_load(recipe_text) or {}
    method_id, _ = _method(recipe)
    sasrec = method_id.startswith("sasrec")
    context = _shared_context(run_dir, metrics, recipe, recipe_text, repo_id)
    context.update(_sasrec_context(recipe, metrics, method_id) if sasrec else _mult_vae_context(recipe, method_id))
    context["usage"] = _usage(repo_id or (run_dir / "model").as_posix(), sasrec)
    context["ranking_rows"] = _rows(metrics, context["ks"], f"{context['method_label']} (this model)")
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=BASELINE_TAGS + [method_id],
        datasets=[context["dataset_id"]],
        metrics=[name for name, _ in RANKING_METRICS],
        model_name=context["model_name"],
        eval_results=_eval_results(metrics, context) or None,
    )
    return ModelCard.from_template(card_data, template_path=str(BASELINE_TEMPLATE_PATH), **context)


def _shared_context(run_dir: Path, metrics: dict, recipe: dict, recipe_text: str, repo_id: str | None) -> dict:
    data = recipe.get("data", {})
    dataset_id, dataset_name, dataset_readme = _dataset_info(str(data.get("path", "data")))
    evaluation = recipe.get("evaluation", {})
    ks = [k for k in evaluation.get("ks", [5, 10, 20]) if f"test/recall@{k}" in metrics]
    steps = metrics.get("train/steps")
    return {
        "model_name": repo_id or recipe.get("name", run_dir.name),
        "run_name": recipe.get("name", run_dir.name),
        "recipe_yaml": recipe_text.rstrip("\n"),
        "seed": recipe.get("seed"),
        "data": data,
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "dataset_readme": dataset_readme,
        "num_users": metrics.get("data/users"),
        "num_items": metrics.get("data/items"),
        "test_users": metrics.get("test/users"),
        "ks": ks,
        "num_beams": None,
        "metric_headers": [f"{label}@{k}" for _, label in RANKING_METRICS for k in ks],
        "training": recipe.get("training", {}),
        "train_steps": None if steps is None else int(steps),
        "train_epochs": metrics.get("train/epochs"),
        "train_minutes": None if metrics.get("train/seconds") is None else metrics["train/seconds"] / 60,
        "num_parameters": _count_parameters(run_dir / "model"),
        "has_plot": _plot_source(run_dir) is not None,
        "plot_file": PLOT_FILE,
    }


def _sasrec_context(recipe: dict, metrics: dict, method_id: str) -> dict:
    section = recipe.get("sasrec", {})
    ce = section.get("loss_type", "ce") == "ce"
    return {
        "method_label": "SASRec" if ce else "SASRec (BCE)",
        "summary": "A **SASRec** next-item recommender: a causal Transformer over the user's item history.",
        "method_description": "SASRec (Kang & McAuley, ICDM 2018), trained as the strong classical floor that "
        "published semantic-ID models are compared with.",
        "model_class": "SASRecForSequentialRecommendation",
        "architecture": f"{section.get('num_layers', 2)} layers, hidden size {section.get('hidden_size', 64)}, "
        f"{section.get('num_heads', 1)} head(s), dropout {section.get('dropout', 0.3)}, history up to "
        f"{section.get('max_seq_length') or recipe.get('data', {}).get('max_history', 20)} items; the output layer is "
        "tied to the item embeddings",
        "objective": "full-softmax cross-entropy over the whole catalogue at every position"
        if ce
        else "binary cross-entropy with one sampled negative per position (the TIGER paper's SASRec row)",
        "stopping_metric": "NDCG@10",
        "protocol": "Chronological leave-one-out: each user's last item is the test target, the one before it the "
        "validation target; training uses the rest.",
        "evaluation_text": "Full ranking over the whole catalogue for every test user, history items not excluded (the "
        "same protocol as the semantic-ID models' evaluation).",
        "limitation": "Trained with full cross-entropy, SASRec beats every published semantic-ID model of TIGER's "
        "size on these data sets; it is the floor to beat, not a weak baseline.",
        "citation": CITATIONS["sasrec"],
    }


def _mult_vae_context(recipe: dict, method_id: str) -> dict:
    strategy = method_id.removeprefix("mult-vae").lstrip("-")
    section = recipe.get("mult_vae", {})
    dmrec = f" with DMRec's **{strategy.upper()}** distribution matching" if strategy else ""
    return {
        "method_label": "Mult-VAE" + (f" + {strategy.upper()}" if strategy else ""),
        "summary": f"A **Mult-VAE** collaborative-filtering recommender{dmrec}: a variational autoencoder over each "
        "user's set of items.",
        "method_description": "Mult-VAE (Liang et al., WWW 2018)"
        + (
            f"; DMRec (SIGIR 2025) matches its user distribution with one from the items' text ({strategy.upper()})"
            if strategy
            else ""
        )
        + ".",
        "model_class": "MultVAEForCollaborativeFiltering",
        "architecture": f"hidden size {section.get('hidden_size', 600)}, latent size "
        f"{section.get('latent_size', 200)}, input dropout {section.get('dropout', 0.3)}",
        "objective": "multinomial log-likelihood with an annealed KL term"
        + (" plus the matching loss" if strategy else ""),
        "stopping_metric": "Recall@20",
        "protocol": "Random 3:1:1 split of each user's items into training, validation and test (DMRec's protocol).",
        "evaluation_text": "Full ranking over every item the user did not have in training.",
        "limitation": "Mult-VAE reads a set of items, not a sequence: it is compared with the other item-set rows, "
        "not with the leave-one-out numbers of the sequential models.",
        "citation": CITATIONS["mult-vae"] + ("\n\n" + CITATIONS["dmrec"] if strategy else ""),
    }


def _rows(metrics: dict, ks: list[int], label: str) -> list[dict]:
    rows = [{"label": label, "cells": [_fmt(metrics.get(f"test/{n}@{k}")) for n, _ in RANKING_METRICS for k in ks]}]
    if any(key.startswith("test/popularity/") for key in metrics):
        cells = [_fmt(metrics.get(f"test/popularity/{n}@{k}")) for n, _ in RANKING_METRICS for k in ks]
        rows.append({"label": "Popularity (training counts)", "cells": cells})
    return rows


def _usage(model_id: str, sasrec: bool) -> str:
    if sasrec:
        return f"""import sidrec  # registers SASRec with the Auto classes
from transformers import AutoModel

model = AutoModel.from_pretrained("{model_id}")
result = model.recommend([[0, 1, 2]], top_k=10)  # item indices, oldest first (items.jsonl maps them to item ids)
print(result.items[0].tolist())"""
    return f"""import sidrec  # registers Mult-VAE with the Auto classes
from transformers import AutoModel

model = AutoModel.from_pretrained("{model_id}")
result = model.recommend([[0, 1, 2]], top_k=20)  # a user's item indices; those items are not recommended again
print(result.items[0].tolist())"""
