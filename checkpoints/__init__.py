"""The trained checkpoints that ship with sidrec, ready to load, with their numbers read from their cards.

Every folder beside this file is a model directory as a results-harness run saved it (weights, config, tokenizer
and item table, remote code, model card), plus the run's ``recipe.yaml`` and ``metrics.json`` and a
``provenance.json`` holding the harness row it was shipped from and the commands that produced it
(``benchmarks/ship_checkpoint.py`` writes all of it; nothing is typed by hand). The folders are package data, so
after ``pip install`` they sit inside the installed package; from a clone they are ``checkpoints/<name>``::

    import sidrec
    from sidrec.checkpoints import checkpoint_path
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint_path("scientific-tiger"))

The numbers come from each card's ``model-index``, parsed by ``huggingface_hub`` as the Hub parses it, so the
list the README renders (``benchmarks/checkpoint_tables.py``) is what a Hub page would show. This module needs
no torch: listing the checkpoints is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = Path(__file__).resolve().parent
CARD_FILE = "README.md"
PROVENANCE_FILE = "provenance.json"

__all__ = [
    "CHECKPOINTS_DIR",
    "PROVENANCE_FILE",
    "ShippedCheckpoint",
    "checkpoint_path",
    "list_checkpoints",
    "read_checkpoint",
]


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One shipped model directory: where it is, what its card reports and the harness row it came from."""

    name: str  # the folder's name, e.g. "scientific-tiger"
    path: Path
    model_name: str  # the card's model-index name (the recipe's name)
    dataset: str  # the card's data set type, e.g. "amazon2018_scientific_5core"
    test_users: int | None
    metrics: dict[str, float]  # the card's test metrics by type, e.g. {"recall@10": 0.0539, ...}
    provenance: dict[str, Any]  # provenance.json: the harness row, its results file, the commands

    @property
    def row(self) -> dict[str, Any]:
        """The results-harness row the checkpoint was shipped from (``benchmarks/results/<dataset>.jsonl``)."""
        return self.provenance["row"]

    @property
    def size_bytes(self) -> int:
        return sum(file.stat().st_size for file in self.path.iterdir() if file.is_file())


def _card_results(card_path: Path) -> tuple[str, str, int | None, dict[str, float]]:
    """(model name, data set type, test users, {metric type: value}) from a card's model-index."""
    from huggingface_hub import ModelCard

    data = ModelCard.load(card_path).data
    results = data.eval_results or []
    if not results or data.model_name is None:
        raise ValueError(
            f"{card_path} has no model-index with results: a shipped checkpoint's card carries its numbers. Ship it "
            "again with benchmarks/ship_checkpoint.py from a run whose model directory has its card"
        )
    metrics = {result.metric_type: float(result.metric_value) for result in results}
    users = (results[0].dataset_args or {}).get("users")
    return data.model_name, results[0].dataset_type, users, metrics


def read_checkpoint(path: str | Path) -> ShippedCheckpoint:
    """A shipped checkpoint's description from its folder: the card's numbers and ``provenance.json``."""
    path = Path(path)
    for needed in ("config.json", CARD_FILE, PROVENANCE_FILE):
        if not (path / needed).is_file():
            raise FileNotFoundError(
                f"{path} has no {needed}: it is not a shipped checkpoint; ship a run's model directory with "
                "`python benchmarks/ship_checkpoint.py <run_dir> <name>`"
            )
    model_name, dataset, users, metrics = _card_results(path / CARD_FILE)
    provenance = json.loads((path / PROVENANCE_FILE).read_text())
    return ShippedCheckpoint(path.name, path, model_name, dataset, users, metrics, provenance)


def list_checkpoints(root: str | Path | None = None) -> list[ShippedCheckpoint]:
    """Every shipped checkpoint under ``root`` (default: the installed or cloned ``checkpoints`` folder), by name."""
    root = Path(root) if root is not None else CHECKPOINTS_DIR
    folders = sorted(folder for folder in root.iterdir() if (folder / "config.json").is_file())
    return [read_checkpoint(folder) for folder in folders]


def checkpoint_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of the shipped checkpoint ``name``: what ``from_pretrained`` and ``sidrec recommend`` take."""
    root = Path(root) if root is not None else CHECKPOINTS_DIR
    path = root / name
    if not name or "/" in name or not (path / "config.json").is_file():
        known = ", ".join(sorted(folder.name for folder in root.iterdir() if (folder / "config.json").is_file()))
        raise FileNotFoundError(f"no shipped checkpoint named {name!r} in {root}; the shipped ones: {known or 'none'}")
    return path
