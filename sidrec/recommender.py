"""``Recommender``: a saved run's model directory as a small Python API over raw item ids."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoModel, AutoTokenizer

from .training.data.item_table import ITEMS_FILE, USERS_FILE, read_item_table, read_user_table
from .training.errors import ModelDirectoryError

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer_config.json", "item_codes.safetensors")
_RESAVE = "copy the whole model directory of one run again (or re-run it)"


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
    def from_pretrained(cls, directory: str | Path) -> Recommender:
        directory = Path(directory)
        if not (directory / "config.json").exists():
            raise FileNotFoundError(
                f"{directory} is not a saved sidrec model (no config.json); pass the run's model directory, "
                "e.g. runs/demo/model"
            )
        missing = [name for name in TOKENIZER_FILES if not (directory / name).exists()]
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
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except (ValueError, OSError, SafetensorError) as error:
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
        table = read_item_table(directory)
        if table is not None:
            item_ids, titles = table
            if len(item_ids) != tokenizer.num_items:
                raise ModelDirectoryError(
                    f"{directory / ITEMS_FILE} lists {len(item_ids)} items but the tokenizer's code table "
                    f"(item_codes.safetensors) holds {tokenizer.num_items}: one of them was edited or comes from "
                    f"another run; {_RESAVE}"
                )
        else:  # no item table: raw ids are the indices
            item_ids = [str(i) for i in range(tokenizer.num_items)]
            titles = [""] * tokenizer.num_items
        return cls(model.eval(), tokenizer, item_ids, titles, read_user_table(directory), ids_are_indices=table is None)

    @property
    def uses_user_token(self) -> bool:
        return bool(getattr(self.tokenizer, "num_user_buckets", 0))

    def to_indices(self, history: list[str | int]) -> list[int]:
        if isinstance(history, (str, int)):
            raise ValueError(
                f"a history is a list of raw item ids, oldest first; got the single {type(history).__name__} "
                f"{history!r}: pass [{history!r}]"
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
        if not _is_count(top_k):
            raise ValueError(f"top_k must be a positive number of items, got {top_k!r}")
        if num_beams is not None and not _is_count(num_beams):
            raise ValueError(f"num_beams must be a positive number of beams, got {num_beams!r}")
        indices = [self.to_indices(history) for history in histories]
        user_indices = self.to_user_indices(users, len(histories))
        num_beams = num_beams or self.model.generation_config.num_beams
        wanted = num_beams if exclude_history else top_k
        result = self.model.recommend(indices, self.tokenizer, top_k=wanted, num_beams=num_beams, users=user_indices)
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
