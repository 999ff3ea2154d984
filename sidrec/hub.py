"""Push a saved sidrec run to the Hugging Face Hub as one repository that loads on its own; push a data folder.

A generative recommender is only usable with its tokenizer: the model emits semantic-ID tokens and
only the tokenizer's code table (``item_codes.safetensors``) maps them back to items. The stock
``model.push_to_hub`` happily uploads a model without it, so :func:`push_recommender` uploads the
whole saved model directory in one commit and refuses a directory that lacks the tokenizer.

After a push, on any machine::

    model = AutoModel.from_pretrained(repo_id)                 # with sidrec installed
    tokenizer = AutoTokenizer.from_pretrained(repo_id)
    model = AutoModel.from_pretrained(repo_id, trust_remote_code=True)   # without sidrec
    sidrec.load_recommender(huggingface_hub.snapshot_download(repo_id))  # raw ids and titles

A data folder goes up with :func:`push_dataset` (a dataset repository, with a generated dataset card); a
recipe then names it as ``data.path: hf://datasets/<repo_id>``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi

from .model_cards.dataset_card import render_dataset_card, summarize_data_folder
from .tokenization.tokenization_semantic_id import SemanticIDTokenizer
from .training.data import DataConfig
from .training.data.hub_data import DATA_SUFFIXES

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_CONFIG = "tokenizer_config.json"
ITEM_CODES = SemanticIDTokenizer.vocab_files_names["item_codes_file"]
DATASET_CARD = "README.md"
# Never uploaded: pickles (weights go as safetensors; Trainer's training_args.bin is a pickle),
# Trainer checkpoints and Python caches.
IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "checkpoint-*", "*__pycache__*", "*.pyc"]


class HubPushWarning(UserWarning):
    """A pushed repository will load, but not exactly as the run was evaluated."""


def push_recommender(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload sidrec recommender",
    commit_description: str | None = None,
) -> CommitInfo:
    """Upload a saved model directory (model + tokenizer + code + card) to ``repo_id`` in one commit.

    ``model_dir`` is what ``model.save_pretrained(d)`` and ``tokenizer.save_pretrained(d)`` wrote
    (a run's ``<output_dir>/model``): ``config.json``, ``model.safetensors`` (or its shards),
    ``generation_config.json``, ``tokenizer_config.json``, ``item_codes.safetensors`` (and
    ``quantizer.safetensors`` if the tokenizer carries its RQ-VAE), the ``.py`` files that
    ``trust_remote_code`` loads, and ``README.md`` / ``items.jsonl`` when present. Pickles and
    checkpoints are left out.

    Raises:
        ValueError: the directory is missing, has no safetensors weights or config, or has no
            tokenizer files (a model pushed without its tokenizer cannot decode item codes).

    Warns (:class:`HubPushWarning`): ``generation_config.json`` is missing or asks for a
    different beam width than the model class's default, or the code named by ``auto_map`` for
    ``trust_remote_code`` is not in the directory.

    Returns:
        The ``CommitInfo`` of the upload (``.oid`` is the new commit, ``.pr_url`` with ``create_pr``).
    """
    directory = Path(model_dir)
    _check_model_files(directory)
    _check_tokenizer_files(directory)
    _check_generation_config(directory)
    _check_remote_code(directory)

    api = HfApi(token=token)
    repo_id = _prepare_repository(api, repo_id, private, revision, create_pr)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(directory),
        commit_message=commit_message,
        commit_description=commit_description,
        revision=None if create_pr else revision,
        create_pr=create_pr,
        ignore_patterns=list(IGNORE_PATTERNS),
    )


def push_adapter(
    adapter_dir: str | os.PathLike,
    repo_id: str,
    *,
    base_model: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload sidrec PEFT adapter",
) -> CommitInfo:
    """Upload a saved PEFT adapter (a fine-tuning run's ``<output_dir>/adapter``) to ``repo_id``.

    An adapter is a few percent of the model, so one base repository can serve many adapters (one per
    time window or domain). ``adapter_config.json`` names its base model in
    ``base_model_name_or_path``; after training that is a local directory, which no other machine
    has. Pass ``base_model`` (the base's Hub id, pushed with :func:`push_recommender`) and the
    uploaded config names it instead, so ``PeftModel.from_pretrained(AutoModel.from_pretrained(base),
    repo_id)`` and ``AutoPeftModelForSeq2SeqLM.from_pretrained(repo_id)`` work anywhere. The local
    file is not changed.

    Raises:
        ValueError: the directory has no ``adapter_config.json`` or ``adapter_model.safetensors``.

    Warns (:class:`HubPushWarning`): no ``base_model`` was given and the config names a local path.
    """
    directory = Path(adapter_dir)
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (directory / name).exists()]
    if missing:
        raise ValueError(
            f"{directory} is not a saved PEFT adapter ({', '.join(missing)} missing); pass a fine-tuning run's "
            "adapter directory (e.g. runs/window-lora/adapter) or save one with peft_model.save_pretrained(directory)"
        )
    config = json.loads((directory / ADAPTER_CONFIG).read_text())
    if base_model is not None:
        config["base_model_name_or_path"] = base_model
    elif Path(str(config.get("base_model_name_or_path"))).exists():
        warnings.warn(
            f"{directory / ADAPTER_CONFIG} names the local base model {config['base_model_name_or_path']!r}: loaders "
            "elsewhere must pass the base model themselves. Push the base with push_recommender and pass its "
            "repository as base_model=...",
            HubPushWarning,
            stacklevel=2,
        )
    operations = [CommitOperationAdd(ADAPTER_CONFIG, (json.dumps(config, indent=2) + "\n").encode())]
    operations += [
        CommitOperationAdd(path.name, str(path))
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != ADAPTER_CONFIG and not any(path.match(p) for p in IGNORE_PATTERNS)
    ]
    api = HfApi(token=token)
    repo_id = _prepare_repository(api, repo_id, private, revision, create_pr)
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        revision=None if create_pr else revision,
        create_pr=create_pr,
    )


def push_dataset(
    data_dir: str | os.PathLike,
    repo_id: str,
    *,
    data: DataConfig | None = None,
    license: str = "unknown",
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload sidrec data set",
) -> CommitInfo:
    """Upload a data folder to the dataset repository ``repo_id`` with a generated dataset card, in one commit.

    The folder is first read as a recipe would read it (``data``: its reading settings, e.g. other column
    names; the defaults are the shipped protocol), so a folder sidrec cannot read is refused before anything
    is created. Its top-level files go up as they are, the folder's ``README.md`` is replaced by the card (which
    quotes it as provenance), and data files of an earlier push that the folder no longer has are deleted,
    so a revision never holds two ``interactions.*`` files. A recipe then reads it with
    ``data.path: hf://datasets/<repo_id>`` (``@<revision>`` for a branch).

    Raises:
        FileNotFoundError / DataFormatError: the folder is missing or cannot be read; the message says why.

    Warns (:class:`HubPushWarning`): the folder has subfolders; they are not uploaded (the readers read only
    the folder's own files).

    Returns:
        The ``CommitInfo`` of the upload.
    """
    directory = Path(data_dir)
    summary = summarize_data_folder(directory, data)  # reads the data: nothing unreadable is pushed
    folders = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders:
        warnings.warn(
            f"{directory} has subfolders ({', '.join(folders)}) that are not uploaded: a data set is the files of "
            "one folder. Push each subfolder that holds a data set on its own (to its own repository or branch)",
            HubPushWarning,
            stacklevel=2,
        )
    api = HfApi(token=token)
    repo_id = _prepare_repository(api, repo_id, private, revision, create_pr, repo_type="dataset")
    card = render_dataset_card(summary, repo_id, license=license)
    uploads = [file.name for file in summary.files if not any(Path(file.name).match(p) for p in IGNORE_PATTERNS)]
    operations = [CommitOperationAdd(DATASET_CARD, str(card).encode())]
    operations += [CommitOperationAdd(name, str(directory / name)) for name in uploads]
    stale = [
        path
        for path in api.list_repo_files(repo_id, repo_type="dataset", revision=None if create_pr else revision)
        if "/" not in path and path.lower().endswith(DATA_SUFFIXES) and path not in uploads
    ]
    operations += [CommitOperationDelete(path) for path in stale]
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        repo_type="dataset",
        revision=None if create_pr else revision,
        create_pr=create_pr,
    )


def _prepare_repository(
    api: HfApi, repo_id: str, private: bool | None, revision: str | None, create_pr: bool, repo_type: str = "model"
) -> str:
    """Create the repository (and the target branch) if needed; returns the full repository id."""
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
    return repo_id


def _check_model_files(directory: Path) -> None:
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory; pass a saved run's model directory, e.g. runs/demo/model")
    weights = [directory / "model.safetensors", directory / "model.safetensors.index.json"]
    if not (directory / "config.json").exists() or not any(path.exists() for path in weights):
        raise ValueError(
            f"{directory} has no config.json and model.safetensors; save the model there first with "
            "model.save_pretrained(directory) (weights are pushed as safetensors only)"
        )


def _check_tokenizer_files(directory: Path) -> None:
    """The tokenizer's config and code table must travel with the model: without them no item can be decoded."""
    missing = [name for name in (TOKENIZER_CONFIG, ITEM_CODES) if not (directory / name).exists()]
    if missing:
        raise ValueError(
            f"{directory} has no tokenizer files ({', '.join(missing)} missing). A recommender pushed without its "
            "SemanticIDTokenizer cannot turn generated codes back into items. Save the tokenizer next to the "
            "model first: tokenizer.save_pretrained(directory), then push again."
        )


def _check_generation_config(directory: Path) -> None:
    """Warn when loaders would decode with other settings than the model class's default beam width."""
    default = _default_num_beams(directory)
    path = directory / "generation_config.json"
    if not path.exists():
        warnings.warn(
            f"{directory} has no generation_config.json: from_pretrained will use the model class's default "
            f"decoding settings (num_beams={default}). If the model was evaluated with other settings, save it "
            "with model.save_pretrained(directory), which writes generation_config.json, and push again.",
            HubPushWarning,
            stacklevel=3,
        )
        return
    saved = json.loads(path.read_text()).get("num_beams", 1)
    if default is not None and saved != default:
        warnings.warn(
            f"generation_config.json in {directory} sets num_beams={saved}, but the model's default is {default}: "
            f"recommend() and generate() on the pushed model will search {saved} beams by default. If the reported "
            f"metrics used {default} beams, set model.generation_config.num_beams = {default}, save and push again.",
            HubPushWarning,
            stacklevel=3,
        )


def _default_num_beams(directory: Path) -> int | None:
    """The beam width a freshly built model of this config gets (its class sets it in ``__init__``).

    Built on the meta device, so no memory is allocated; None when the config cannot be built.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    try:
        config = AutoConfig.from_pretrained(directory)
        with torch.device("meta"):
            model = AutoModelForSeq2SeqLM.from_config(config)
    except (ValueError, OSError, KeyError, TypeError):
        return None
    return model.generation_config.num_beams


def _check_remote_code(directory: Path) -> None:
    """Warn if ``auto_map`` names a module that is not in the directory: trust_remote_code would fail."""
    missing = set()
    for name in ("config.json", TOKENIZER_CONFIG):
        auto_map = json.loads((directory / name).read_text()).get("auto_map") or {}
        for reference in auto_map.values():
            for target in reference if isinstance(reference, list) else [reference]:
                if target and "--" not in target and not (directory / f"{target.rsplit('.', 1)[0]}.py").exists():
                    missing.add(f"{target.rsplit('.', 1)[0]}.py")
    if missing:
        warnings.warn(
            f"{directory} lacks {', '.join(sorted(missing))}: the pushed repository will load with sidrec installed "
            "but not with trust_remote_code=True. Save with model.save_pretrained / tokenizer.save_pretrained "
            "after `import sidrec`, which copies the code.",
            HubPushWarning,
            stacklevel=3,
        )
