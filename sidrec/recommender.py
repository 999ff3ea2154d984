"""``Recommender``: a saved run's model directory as a small Python API over raw item ids."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoModel, AutoTokenizer

from .checkpoints import CHECKPOINTS_DIR
from .modeling.raw_id_recommender import ITEM_RANKERS, RawIdRecommender, Recommendation
from .training.data.item_table import ITEMS_FILE, read_item_table, read_user_table
from .training.errors import ModelDirectoryError

__all__ = ["ITEM_RANKERS", "Recommendation", "Recommender", "resolve_model_directory"]
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer_config.json", "item_codes.safetensors")
_RESAVE = "copy the whole model directory of one run again (or re-run it)"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _model_type(directory: Path) -> str | None:
    """``model_type`` of a saved config.json (None when it cannot be read: loading then says what is wrong)."""
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_model_directory(name: str | Path, revision: str | None = None) -> Path:
    """A local model directory, a checkpoint shipped with sidrec by name, or a Hub repository id (``owner/name``).

    ``from_pretrained`` takes both; so does every sidrec entry that loads a saved model. A shipped checkpoint's
    name (``scientific-tiger``: ``sidrec.checkpoints``) is its installed folder unless a local folder of that name
    exists. A name that is neither an existing folder nor a repository id is an error that says which it was
    taken for.
    """
    path = Path(name)
    shipped = CHECKPOINTS_DIR / str(name)
    if not path.exists() and "/" not in str(name) and (shipped / "config.json").is_file():
        return shipped
    if path.exists() or not _REPO_ID.match(str(name)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(name), revision=revision))
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"{name} is neither a local folder nor a Hub model repository that this token can read "
            f"({error.__class__.__name__})"
        ) from error
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise FileNotFoundError(
            f"{name} is not a local folder, and the Hub repository of that name could not be downloaded ({error}); "
            "check the name and the connection, or pass the path of a downloaded copy"
        ) from error


class Recommender(RawIdRecommender):
    """Model + tokenizer + item table of a saved run, speaking raw item and user ids.

    ``Recommender.from_pretrained("runs/demo/model").recommend(["12", "40"], top_k=10)`` returns
    :class:`Recommendation` rows. Raw ids are those of the data set (the ``item_id`` and ``user_id``
    columns). A model trained with a user token (``model.num_user_buckets`` > 0) is served as it was
    evaluated only when the user is given: ``recommend(history, user="A2X...")``; without one it
    warns and recommends from the history alone. Serving itself (the checks, the ranking, the rows) is
    :class:`~sidrec.modeling.raw_id_recommender.RawIdRecommender`, which the ``sequential-recommendation``
    pipeline shares; this class adds loading a saved run with every check of its files.
    """

    @classmethod
    def from_pretrained(cls, directory: str | Path, revision: str | None = None) -> Recommender:
        """Load a saved run's model directory, or a Hub repository id (``owner/name``) as ``from_pretrained`` does."""
        directory = resolve_model_directory(directory, revision)
        if not (directory / "config.json").exists():
            raise FileNotFoundError(
                f"{directory} is not a saved sidrec model (no config.json); pass the run's model directory, "
                "e.g. runs/demo/model"
            )
        ranks_items = _model_type(directory) in ITEM_RANKERS  # SASRec: scores item ids directly, no tokenizer
        missing = [name for name in TOKENIZER_FILES if not ranks_items and not (directory / name).exists()]
        if ranks_items and not (directory / ITEMS_FILE).exists():
            missing.append(ITEMS_FILE)
        if not any((directory / name).exists() for name in WEIGHTS_FILES):
            missing.insert(0, WEIGHTS_FILES[0])
        if missing:
            raise FileNotFoundError(
                f"{directory} has no {' and no '.join(missing)}: the model directory is incomplete; {_RESAVE}"
            )
        try:
            model = AutoModel.from_pretrained(str(directory))
        except (OSError, SafetensorError) as error:  # transformers reports a damaged config.json as OSError
            raise ModelDirectoryError(
                f"cannot load the model in {directory} ({error}); config.json or the weights file is damaged "
                f"or truncated: {_RESAVE}"
            ) from error
        except RuntimeError as error:  # shapes in config.json that the weights do not have
            if "size mismatch" not in str(error) and "mismatched" not in str(error):
                raise
            raise ModelDirectoryError(
                f"{directory / 'config.json'} does not describe the weights in {directory} (a size such as d_model, "
                f"codebook_size or num_code_levels differs from the saved tensors): config.json was edited or comes "
                f"from another run; {_RESAVE}"
            ) from error
        if ranks_items:
            item_ids, titles = read_item_table(directory)
            if len(item_ids) != model.config.num_items:
                raise ModelDirectoryError(
                    f"{directory / ITEMS_FILE} lists {len(item_ids)} items but the model scores "
                    f"{model.config.num_items} (config.json: num_items): {_RESAVE}"
                )
            return cls(model.eval(), None, item_ids, titles)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except ValueError as error:
            if ITEMS_FILE in str(error):  # the tokenizer's own items.jsonl, damaged or from another run
                raise ModelDirectoryError(f"{error}; {_RESAVE}") from error
            raise ModelDirectoryError(
                f"cannot load the tokenizer in {directory} ({error}); tokenizer_config.json and "
                f"item_codes.safetensors do not belong together: {_RESAVE}"
            ) from error
        except (OSError, SafetensorError) as error:
            raise ModelDirectoryError(
                f"cannot load the tokenizer in {directory} ({error}); tokenizer_config.json and "
                f"item_codes.safetensors do not belong together: {_RESAVE}"
            ) from error
        config = model.config
        expected = tuple(getattr(config, name, None) for name in ("num_code_levels", "codebook_size", "vocab_size"))
        found = (tokenizer.num_levels, tokenizer.codebook_size, tokenizer.vocab_size)
        if None not in expected and expected != found:
            raise ModelDirectoryError(
                f"the tokenizer in {directory} (tokenizer_config.json + item_codes.safetensors: levels, codebook "
                f"size, vocabulary = {found}) does not match the model's config.json ({expected}): the files come "
                f"from different runs; {_RESAVE}"
            )
        fingerprint = getattr(config, "code_fingerprint", None)
        if fingerprint is not None and fingerprint != getattr(tokenizer, "code_fingerprint", fingerprint):
            raise ModelDirectoryError(
                f"the code table in {directory} (item_codes.safetensors, fingerprint {tokenizer.code_fingerprint}) is "
                f"not the one this model was trained on (config.json: code_fingerprint {fingerprint}): the tokenizer "
                f"files come from another run; {_RESAVE}"
            )
        held = getattr(tokenizer, "item_ids", None)
        table = (held, tokenizer.item_titles) if held is not None else read_item_table(directory)
        if table is not None:
            item_ids, titles = table
            if len(item_ids) != tokenizer.num_items:
                raise ModelDirectoryError(
                    f"{directory / ITEMS_FILE} lists {len(item_ids)} items but the tokenizer's code table "
                    f"(item_codes.safetensors) holds {tokenizer.num_items}: one of them was edited or comes from "
                    f"another run; {_RESAVE}"
                )
        else:  # no item table: raw ids are the indices
            warnings.warn(
                f"{directory} has no {ITEMS_FILE} (a model saved before sidrec's tokenizer carried its raw ids): item "
                f"ids are taken as the catalogue's indices 0..{tokenizer.num_items - 1} and no titles are shown",
                UserWarning,
                stacklevel=2,
            )
            item_ids = [str(i) for i in range(tokenizer.num_items)]
            titles = [""] * tokenizer.num_items
        return cls(model.eval(), tokenizer, item_ids, titles, read_user_table(directory), ids_are_indices=table is None)
