"""Raw item ids in, ranked rows out: the serving core that needs no files and no sidrec.

``sidrec.Recommender`` (which adds loading a saved run with its checks) and the ``sequential-recommendation``
pipeline saved beside every model both serve through :class:`RawIdRecommender`, so one request gets the same
checks, the same messages and the same items and scores from either. It lives in the Hub-portable folder
because the pipeline runs it where sidrec is not installed (``trust_remote_code``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .id_tables import ITEMS_FILE, USERS_FILE
from .input_checks import check_count, empty_history_message, is_exact_int
from .outputs import Recommendations
from .ranking import GenerativeRanker, Ranker, SequenceRanker

ITEM_RANKERS = ("sasrec",)  # model types that score item ids directly (no semantic-ID tokenizer)


@dataclass
class Recommendation:
    rank: int
    item_id: str
    title: str
    score: float


@dataclass
class RankRequest:
    """A checked request: item and user indices, and how many items to ask the ranker for."""

    histories: list[list[int]]
    users: list[int] | None
    top_k: int
    num_beams: int | None
    exclude_history: bool


class RawIdRecommender:
    """Model + tokenizer + item table, speaking the data set's raw item and user ids.

    Raw ids are those of the data set (the ``item_id`` and ``user_id`` columns). A model trained with a user
    token (``model.num_user_buckets`` > 0) is served as it was evaluated only when the user is given; without
    one it warns and recommends from the history alone. ``tokenizer`` is None for a model that ranks item ids
    itself (SASRec).
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
        self._items_of_title: dict[str, list[str]] | None = None

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

    def titles_to_item_ids(self, history: list[str], row: int = 0) -> list[str]:
        """Raw item ids of one history given as item titles (matched exactly, as ``items.jsonl`` spells them).

        A title that no item has, or that two items share, names no single item: both are errors that say
        which title and what to pass instead, never a guess. What is not a list of titles is passed through
        unchanged, so :meth:`to_indices` refuses it with the words it uses for item ids.
        """
        if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
            return history
        if self._items_of_title is None:
            self._items_of_title = {}
            for raw, title in zip(self.item_ids, self.titles):
                if title:  # an item without a title cannot be named by one
                    self._items_of_title.setdefault(title, []).append(raw)
        raw_ids = []
        for title in history:
            if not isinstance(title, str):
                raise ValueError(
                    f"history {row}: title {title!r} is a {type(title).__name__}, not a string; pass item titles "
                    "as strings, or item ids with by='item_id'"
                )
            items = self._items_of_title.get(title)
            if items is None:
                near = [name for name in self._items_of_title if title.strip().lower() == name.strip().lower()]
                hint = f" (did you mean {near[0]!r}? titles are matched exactly)" if near else ""
                raise ValueError(
                    f"history {row}: unknown title {title!r}: no item of this model's catalogue of "
                    f"{len(self.item_ids)} items has it{hint}; see {ITEMS_FILE} in the model directory for the "
                    "titles, or pass item ids with by='item_id'"
                )
            if len(items) > 1:
                raise ValueError(
                    f"history {row}: title {title!r} is shared by {len(items)} items (ids {items[:5]}), so it names "
                    "no single item; pass the history as item ids with by='item_id', using the id you meant"
                )
            raw_ids.append(items[0])
        return raw_ids

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
                stacklevel=4,
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

    def prepare(
        self,
        histories: list[list[str | int]],
        users: list[str | int | None] | None = None,
        top_k: int = 10,
        num_beams: int | None = None,
        exclude_history: bool = False,
    ) -> RankRequest:
        """Every check of a request, in order: counts, the batch, each history's ids, the users, the beams."""
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
            return RankRequest(indices, user_indices, top_k, None, exclude_history)
        num_beams = num_beams or self.model.generation_config.num_beams
        if top_k > num_beams:  # with exclude_history too: the list would silently come back short
            raise ValueError(
                f"top_k={top_k} exceeds num_beams={num_beams}: beam search returns at most one item per beam; "
                f"pass num_beams >= {top_k}"
            )
        return RankRequest(indices, user_indices, top_k, num_beams, exclude_history)

    def ranker(self, request: RankRequest) -> Ranker:
        """The ranker of the contract that serves this model: the same one evaluation used."""
        if self.ranks_items:
            return SequenceRanker(self.model, exclude_history=request.exclude_history)
        return GenerativeRanker(self.model, self.tokenizer, num_beams=request.num_beams)

    def rank(self, request: RankRequest) -> Recommendations:
        """The ranker's top items for a checked request (all beams when the history is dropped afterwards)."""
        rows = {"history": request.histories}
        if request.users is not None:
            rows["user"] = request.users
        if self.ranks_items:  # the model drops the history itself, and never returns more items than it has
            wanted = min(request.top_k, len(self.item_ids))
        else:
            wanted = request.num_beams if request.exclude_history else request.top_k
        return self.ranker(request).rank(rows, wanted)

    def rows(self, request: RankRequest, result: Recommendations) -> list[list[Recommendation]]:
        """Recommendation rows per history from ranked indices and scores (history items dropped if asked)."""
        drop_history = request.exclude_history and not self.ranks_items  # SASRec dropped them while ranking
        lists = []
        for row, history in enumerate(request.histories):
            seen = set(history) if drop_history else set()
            pairs = [
                (item, score)
                for item, score in zip(result.items[row].tolist(), result.scores[row].tolist())
                if item >= 0 and item not in seen
            ][: request.top_k]
            lists.append(
                [
                    Recommendation(rank=rank, item_id=self.item_ids[item], title=self.titles[item], score=score)
                    for rank, (item, score) in enumerate(pairs, start=1)
                ]
            )
        return lists

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
        request = self.prepare(histories, users, top_k, num_beams, exclude_history)
        return self.rows(request, self.rank(request))

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
