"""Fine-tuning a saved recommender on newer data, fully or through a ``peft`` adapter.

A deployed generative recommender goes stale as interactions arrive. Re-training from scratch
re-fits the tokenizer and moves every item's code; fine-tuning keeps the codes (the catalogue is
the same) and only updates the model on the new window. With PEFT that update is a small adapter
(a LoRA of a 1M-parameter SID-T5 is a few percent of its size) that can be stored, pushed and
swapped per window or per domain while the base model stays frozen.

The recipe's ``finetune`` section drives it (``from_model``, ``peft``, ``train_last``); a base run
trained with ``data.drop_last: N`` and a fine-tuning run with ``finetune.train_last: N`` on the full
data is the "new time window" protocol the README reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import peft
from datasets import Dataset
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from peft import PeftConfig, PeftModel, get_peft_config, get_peft_model
from transformers import AutoModel, AutoTokenizer

from .data import SequentialData
from .data.item_table import read_item_table
from .errors import RecipeError

# SID-T5 is a T5: without target_modules, a method adapts the layers peft picks for T5.
DEFAULT_ARCHITECTURE = "t5"
DEFAULT_TASK_TYPE = "SEQ_2_SEQ_LM"


def resolve_model_dir(from_model: str, key: str = "finetune.from_model") -> Path:
    """A local directory for ``from_model``: the directory itself, or a Hub repository's snapshot.

    A pushed model (``push_recommender``) is a whole run's model directory, items table included, so
    fine-tuning from the Hub works as from a local run. ``key`` is the recipe setting named in errors.
    """
    directory = Path(from_model)
    if (directory / "config.json").exists():
        return directory
    hint = "point it at a finished run's model directory (e.g. runs/window-base/model) or a pushed Hub repository"
    if directory.exists() or from_model.count("/") != 1:
        raise RecipeError(f"{key}={from_model!r} is not a saved sidrec model (no config.json); {hint}")
    try:
        return Path(snapshot_download(from_model))
    except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError) as error:
        message = f"{key}={from_model!r} could not be loaded from the Hub ({error}); {hint}"
        raise RecipeError(message) from error


def load_base_model(from_model: str, data: SequentialData):
    """The saved model and tokenizer to fine-tune, checked against the data's catalogue.

    The fine-tuning data must index items exactly as the base run did (same path and filters;
    ``data.drop_last`` may differ): the codes are per item index, so a different catalogue would
    silently recommend the wrong items.
    """
    directory = resolve_model_dir(from_model)
    model = AutoModel.from_pretrained(str(directory))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    check_same_catalogue(tokenizer, directory, data, "finetune.from_model")
    return model, tokenizer


def check_same_catalogue(tokenizer, directory: Path, data: SequentialData, key: str) -> None:
    """Refuse a saved run's codes for a catalogue indexed differently from ``data`` (``key`` names the setting)."""
    if tokenizer.num_items != data.num_items:
        raise RecipeError(
            f"{key} has codes for {tokenizer.num_items:,} items but the data has {data.num_items:,}: "
            "use the saved run's catalogue (the same data.path and filtering settings; only "
            "data.drop_last may differ)"
        )
    table = read_item_table(directory)
    if table is not None:
        saved = table[0]
        if saved != data.item_ids:
            first = next(i for i, (a, b) in enumerate(zip(saved, data.item_ids)) if a != b)
            raise RecipeError(
                f"{key} indexes items differently from the data (item {first} is {saved[first]!r} "
                f"there, {data.item_ids[first]!r} here): use the saved run's data.path and filtering settings"
            )


def peft_config(options: dict[str, Any]) -> PeftConfig:
    """A ``peft`` config from a recipe mapping, with T5's default target modules.

    ``peft_type`` is required (``LORA``, ``IA3``, ``LOHA``, ...); the rest are that config's
    arguments. Prompt-learning methods are refused: they prepend virtual tokens through the wrapper's
    ``forward``, which sidrec's beam search (``recommend``) does not go through.
    """
    values = dict(options)
    if "peft_type" not in values:
        raise RecipeError("finetune.peft needs peft_type, e.g. {peft_type: LORA, r: 8, lora_alpha: 16}")
    peft_type = str(values["peft_type"]).upper()
    if peft_type not in peft.PeftType.__members__:
        raise RecipeError(
            f"finetune.peft.peft_type={values['peft_type']!r} is not a peft method; use one of "
            f"{', '.join(sorted(peft.PeftType.__members__))}"
        )
    values["peft_type"] = peft_type
    values.setdefault("task_type", DEFAULT_TASK_TYPE)
    for key, suffix in (("target_modules", "TARGET_MODULES"), ("feedforward_modules", "FEEDFORWARD_MODULES")):
        defaults = getattr(peft.utils.constants, f"TRANSFORMERS_MODELS_TO_{peft_type}_{suffix}_MAPPING", {})
        if values.get(key) is None and DEFAULT_ARCHITECTURE in defaults:
            values[key] = list(defaults[DEFAULT_ARCHITECTURE])
    try:
        config = get_peft_config(values)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"finetune.peft {options}: {error}") from error
    if config.is_prompt_learning:
        raise RecipeError(
            f"finetune.peft.peft_type={peft_type} is a prompt-learning method, which sidrec's constrained beam "
            "search does not run through; use a method that adapts the layers in place (LORA, IA3, LOHA, LOKR, ...)"
        )
    return config


def wrap_with_adapter(model, options: dict[str, Any]) -> PeftModel:
    """``get_peft_model`` with the recipe's config: only the adapter's weights will train."""
    return get_peft_model(model, peft_config(options))


def last_examples_per_user(split: Dataset, last: int) -> Dataset:
    """Each user's last ``last`` rows of a training split (rows are per user, oldest target first).

    With a base model trained on ``data.drop_last: N``, ``last=N`` keeps exactly the training
    targets that are new since that snapshot.
    """
    if isinstance(last, bool) or not isinstance(last, int) or last < 1:
        raise RecipeError(f"finetune.train_last must be a positive integer or null, got {last!r}")
    users = np.asarray(split["user"])
    if len(users) == 0:
        return split
    if np.any(np.diff(users) < 0):
        raise ValueError("the training split's rows must be grouped by user in order (as load_sequential_data makes)")
    group_end = np.r_[np.flatnonzero(np.diff(users)) + 1, len(users)]
    group_start = np.r_[0, group_end[:-1]]
    rank_from_end = np.repeat(group_end, group_end - group_start) - np.arange(len(users))  # 1 for the last row
    return split.select(np.flatnonzero(rank_from_end <= last).tolist())


def parameter_counts(model) -> dict[str, int]:
    """Trainable and total parameters (an adapter's share is what PEFT buys)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}
