"""What every sidrec model card shares: run files, the method's name, the Hub's eval results.

Split from ``card.py`` so that the semantic-ID card and the baselines' card (``baseline_card.py``)
both build on it without importing each other.
"""

from __future__ import annotations

import json
import re
import struct
from math import prod
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult

PLOT_FILE = "training.png"
RANKING_METRICS = (("recall", "Recall"), ("ndcg", "NDCG"))
TAGS = ["sidrec", "generative-recommendation", "semantic-ids", "recommendation"]
TASK_TYPE = "recommendation"
TASK_NAME = "Sequential recommendation (next item)"
METHOD_LABELS = {"tiger": "TIGER", "dmrec-t5": "DMRec-T5", "mult-vae": "Mult-VAE"}


def _count_parameters(model_dir: Path) -> int | None:
    """Parameters in ``model.safetensors``, read from its JSON header (no weights loaded, no torch)."""
    path = model_dir / "model.safetensors"
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return sum(prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


def _dataset_info(path: str) -> tuple[str, str, str | None]:
    """(id, readable name, README location) of the data set a run read.

    A data set on the Hub is named by its repository (``owner/name``): the card's ``datasets`` metadata and
    model-index then link to it, and a pinned path's ``@<commit>`` stays out of the name. A local folder is
    named by its README's title; recipes keep data paths relative to the project root, so the README is looked
    up from the current directory and from the project root.
    """
    from ..training.data.hub_data import is_hub_path, parse_hub_data_path  # training imports the cards

    if is_hub_path(path):
        hub = parse_hub_data_path(path)
        return hub.repo_id, hub.name, None
    candidates = [Path(path)]
    if not Path(path).is_absolute():
        candidates.append(Path(__file__).resolve().parents[1] / path)
    for directory in candidates:
        readme = directory / "README.md"
        if readme.exists():
            for line in readme.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    return Path(path).name, line[2:].strip(), f"{path}/README.md"
            return Path(path).name, Path(path).name, f"{path}/README.md"
    return Path(path).name, Path(path).name, None


def _eval_results(metrics: dict[str, Any], context: dict[str, Any]) -> list[EvalResult]:
    """One ``EvalResult`` per test metric, so the Hub shows the results; values exactly as in metrics.json."""
    results = []
    for name, label in RANKING_METRICS:
        for k in context["ks"]:
            value = metrics.get(f"test/{name}@{k}")
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type=TASK_TYPE,
                    task_name=TASK_NAME,
                    dataset_type=context["dataset_id"],
                    dataset_name=context["dataset_name"],
                    dataset_split="test",
                    dataset_args={
                        "protocol": "chronological leave-one-out",
                        "ranking": "full",
                        "users": context["test_users"],
                        "items": context["num_items"],
                    },
                    metric_type=f"{name}@{k}",
                    metric_name=f"{label}@{k}",
                    metric_value=value,
                    metric_args={"k": k, "num_beams": context["num_beams"], "decoding": "trie-constrained beam search"},
                )
            )
    return results


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _method(recipe: dict[str, Any]) -> tuple[str, str]:
    """(short name, display label) of the method, named from the recipe by the library's own rule.

    ``sidrec.training.registry.method_name`` reads the recipe's sections, so a SODA run over frozen
    codes is ``tiger+soda`` (TIGER + SODA), never DIGER.
    """
    from ..training.errors import RecipeError
    from ..training.recipe import Recipe, known_keys, recipe_from_dict
    from ..training.registry import method_name, recipe_sections

    sections = recipe_sections()
    known = known_keys({k: v for k, v in recipe.items() if k not in sections}, Recipe)
    known.update({k: known_keys(v, sections[k]) for k, v in recipe.items() if k in sections})
    try:  # a recipe.yaml from an older sidrec may hold keys since removed: they named no method
        name = method_name(recipe_from_dict(known))
    except (RecipeError, TypeError):
        name = "diger-end-to-end" if (recipe.get("joint") or {}).get("enabled") else "tiger"
    base, *plug_ins = name.split("+")
    label = "DIGER" if base.startswith("diger") else METHOD_LABELS.get(base, base.upper())
    return name, " + ".join([label, *(plug_in.upper() for plug_in in plug_ins)])


def _plot_source(run_dir: Path) -> Path | None:
    """Where the training plot comes from: the run's PNG, one already beside the card, or a checkpoint log."""
    for path in (run_dir / PLOT_FILE, run_dir / "model" / PLOT_FILE):
        if path.exists():
            return path
    return _last_trainer_state(run_dir)


def _last_trainer_state(run_dir: Path) -> Path | None:
    """The ``trainer_state.json`` of the run's last checkpoint (its log history is the longest)."""
    states = list((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    numbered = [(int(m.group(1)), path) for path in states if (m := re.search(r"checkpoint-(\d+)$", path.parent.name))]
    return max(numbered)[1] if numbered else None
