"""``Recommender``: a saved run's model directory as a small Python API over raw item ids."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoModel, AutoTokenizer

from .modeling.input_checks import check_count, empty_history_message, is_exact_int
from .training.data.item_table import ITEMS_FILE, USERS_FILE, read_item_table, read_user_table
from .training.errors import ModelDirectoryError

ITEM_RANKERS = ("sasrec",)  # model types that score item ids directly (no semantic-ID tokenizer)
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
    """A local model directory, or a Hub repository id (``owner/name``) downloaded into the Hub cache.

    ``from_pretrained`` takes both; so does every sidrec entry that loads a saved model. A name that is
    neither an existing folder nor a repository id is an error that says which it was taken for.
    """
    path = Path(name)
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


@dataclass
class Recommendation:
    rank: int
    item_id: str
    title: str
    score: float


class Recommender:
    """Model + tokenizer + item table of a saved run, speaking raw item and user ids.

    ``Recommender.from_pretrained("runs/demo/model").recommend(["12", "40"], top_k=10)`` returns
    :class:`Recommendation` rows. Raw ids are those of the data set (the ``item_id`` and ``user_id``
    columns). A model trained with a user token (``model.num_user_buckets`` > 0) is served as it was
    evaluated only when the user is given: ``recommend(history, user="A2X...")``; without one it
    warns and recommends from the history alone.
    """

    def __init__(
        self,
        model,
        tokenizer,
        item_ids: list[str],
        titles: list[str],
        user_ids: list[str] | None = None,
        ids_are_indices: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.item_ids = item_ids
        self.titles = titles
        self.index_of = {raw: index for index, raw in enumerate(item_ids)}
        self.user_index_of = {raw: index for index, raw in enumerate(user_ids or [])}
        self.ids_are_indices = ids_are_indices  # no items.jsonl: raw ids are the item indices

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

    @property
    def uses_user_token(self) -> bool:
        return bool(getattr(self.tokenizer, "num_user_buckets", 0))

    @property
    def ranks_items(self) -> bool:
        """Whether the model scores item ids itself (SASRec), rather than decoding semantic IDs by beam search."""
        return self.tokenizer is None

    def to_indices(self, history: list[str | int], row: int = 0) -> list[int]:
        """Item indices of one history of raw ids (``row``: its place in a batch, for the messages)."""
        if isinstance(history, (str, bytes)) or is_exact_int(history) or isinstance(history, float):
            raise ValueError(
                f"a history is a list of raw item ids, oldest first; got the single {type(history).__name__} "
                f"{history!r}: pass [{history!r}]"
            )
        history = list(history)
        if not history:
            raise ValueError(empty_history_message(row))
        for raw in history:  # raw ids are the data set's strings, or whole numbers written as ints
            if not isinstance(raw, str) and not is_exact_int(raw):
                raise ValueError(
                    f"item id {raw!r} is a {type(raw).__name__}: raw item ids are strings (or ints), as in the "
                    f"data set's item_id column; a float or bool id is not converted"
                )
        unknown = [raw for raw in history if str(raw) not in self.index_of]
        if unknown:
            where = (
                f"this model directory has no {ITEMS_FILE}, so item ids are the item indices "
                f"0..{len(self.item_ids) - 1}"
                if self.ids_are_indices
                else f"see {ITEMS_FILE} in the model directory for valid ids"
            )
            raise ValueError(
                f"unknown item id(s) {unknown[:5]}: not in this model's catalogue of {len(self.item_ids)} items "
                f"({where})"
            )
        return [self.index_of[str(raw)] for raw in history]

    def to_user_indices(self, users: list[str | int | None] | None, count: int) -> list[int] | None:
        """User indices for the user token, or None when the model has none (or no user was given)."""
        if not self.uses_user_token:
            if users is not None and any(user is not None for user in users):
                raise ValueError(
                    "a user was given, but this model has no user token (num_user_buckets=0): it recommends from "
                    "the history alone, so the user would change nothing; leave the user out"
                )
            return None
        if users is None or any(user is None for user in users):
            warnings.warn(
                "this model was trained with a user token (num_user_buckets="
                f"{self.tokenizer.num_user_buckets}) and is evaluated with it; pass user=<raw user id> to be "
                "served the same way. Recommending from the history alone.",
                UserWarning,
                stacklevel=3,
            )
            return None
        if len(users) != count:
            raise ValueError(f"got {len(users)} users for {count} histories; pass one user per history")
        if not self.user_index_of:
            raise ValueError(f"this model directory has no {USERS_FILE}: raw user ids cannot be mapped to tokens")
        unknown = [user for user in users if str(user) not in self.user_index_of]
        if unknown:
            raise ValueError(
                f"unknown user id(s) {unknown[:5]}: not among the {len(self.user_index_of)} users this model was "
                f"trained on (see {USERS_FILE}); pass user=None for a new user"
            )
        return [self.user_index_of[str(user)] for user in users]

    def recommend_batch(
        self,
        histories: list[list[str | int]],
        users: list[str | int | None] | None = None,
        top_k: int = 10,
        num_beams: int | None = None,
        exclude_history: bool = False,
    ) -> list[list[Recommendation]]:
        """Top-``top_k`` items for each history of raw item ids (oldest first), one list per history.

        ``exclude_history`` (default False, as evaluated: a user may come back to an item) drops the
        user's own items; the beams that remain are returned, so a list may then hold fewer than
        ``top_k`` items (raise ``num_beams`` for more).
        """
        top_k = check_count(top_k, "top_k", "items")
        num_beams = check_count(num_beams, "num_beams", "beams") if num_beams is not None else None
        if isinstance(histories, (str, bytes)) or not hasattr(histories, "__len__") or len(histories) == 0:
            raise ValueError(
                f"histories must be a non-empty list of histories (lists of raw item ids), got {histories!r}"
            )
        indices = [self.to_indices(history, row) for row, history in enumerate(histories)]
        user_indices = self.to_user_indices(users, len(histories))
        if self.ranks_items:  # full ranking over the catalogue: no beams, the history excluded by the model itself
            if num_beams is not None:
                raise ValueError(
                    "num_beams sets beam search; this model (SASRec) ranks the whole catalogue: leave it out"
                )
            result = self.model.recommend(
                indices, top_k=min(top_k, len(self.item_ids)), exclude_history=exclude_history
            )
            return self._rows(result, indices, exclude_history=False, top_k=top_k)
        num_beams = num_beams or self.model.generation_config.num_beams
        if top_k > num_beams:  # with exclude_history too: the list would silently come back short
            raise ValueError(
                f"top_k={top_k} exceeds num_beams={num_beams}: beam search returns at most one item per beam; "
                f"pass num_beams >= {top_k}"
            )
        wanted = num_beams if exclude_history else top_k
        result = self.model.recommend(indices, self.tokenizer, top_k=wanted, num_beams=num_beams, users=user_indices)
        return self._rows(result, indices, exclude_history, top_k)

    def _rows(self, result, indices: list[list[int]], exclude_history: bool, top_k: int) -> list[list[Recommendation]]:
        """Recommendation rows per history from a model's ranked indices and scores (history items dropped if asked)."""
        lists = []
        for row, history in enumerate(indices):
            seen = set(history) if exclude_history else set()
            pairs = [
                (item, score)
                for item, score in zip(result.items[row].tolist(), result.scores[row].tolist())
                if item >= 0 and item not in seen
            ][:top_k]
            lists.append(
                [
                    Recommendation(rank=rank, item_id=self.item_ids[item], title=self.titles[item], score=score)
                    for rank, (item, score) in enumerate(pairs, start=1)
                ]
            )
        return lists

    def recommend(
        self,
        history: list[str | int],
        top_k: int = 10,
        num_beams: int | None = None,
        user: str | int | None = None,
        exclude_history: bool = False,
    ) -> list[Recommendation]:
        """Top-``top_k`` items for one history of raw item ids (oldest first); see :meth:`recommend_batch`."""
        users = [user] if user is not None else None
        return self.recommend_batch(
            [history], users, top_k=top_k, num_beams=num_beams, exclude_history=exclude_history
        )[0]
