"""Interaction data: k-core filtering, indexing and the chronological leave-one-out protocol.

Every reader (``readers.py``) turns its source into the same two frames (interactions: user, item,
order; items: item key + text fields), so filtering, indexing and splitting happen here once, the same way for every
source format. That is what makes a model trained on RecBole files comparable with one trained on
the shipped CSVs:

- ``table``: CSV / CSV.GZ / Parquet / JSONL(.GZ) with named columns (the shipped data);
- ``recbole``: RecBole atomic files ``<name>.inter`` + ``<name>.item``;
- ``amazon``: Amazon review JSON(.GZ) + metadata (the 2014 metadata is Python-literal lines).

Bad input raises :class:`DataFormatError` (or ``FileNotFoundError``) with a message that names the
problem and the setting to change, because a data loader is the first thing a new user runs.
"""

from __future__ import annotations

import hashlib
import html
import operator
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict, DatasetInfo, Features, Value

from .config import DataConfig
from .hub_data import download_hub_data, is_hub_path
from .readers import FORMATS, READERS, DataFormatError, RawData, detect_format

try:  # datasets >= 4 spells a variable-length list `List`; older versions only have `Sequence`
    from datasets import List as _ListFeature
except ImportError:  # pragma: no cover - depends on the installed datasets version
    from datasets import Sequence as _ListFeature

MIN_SEQUENCE = 3  # one train target, one validation target, one test target
SPLIT_FEATURES = Features({"user": Value("int64"), "history": _ListFeature(Value("int64")), "target": Value("int64")})
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_SPACE = re.compile(r"\s+")
_INTEGER = re.compile(r"[+-]?\d+")


class UserSequences(Sequence):
    """Every user's chronological item indices, held as one flat int64 array and its offsets.

    ``sequences[u]`` is user ``u``'s list of item indices, as a list of lists would give, but the
    storage is 8 bytes per interaction: a list of Python ints costs about 36 (0.5 GB for the 10M
    interactions of ``bench_scale.py --pipeline --items 1000000``). Equal to any sequence of the same
    lists.
    """

    def __init__(self, flat: np.ndarray, lengths: np.ndarray):
        self.flat = np.ascontiguousarray(flat, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        if self.offsets[-1] != len(self.flat):
            raise ValueError(f"lengths sum to {int(self.offsets[-1])} but there are {len(self.flat)} items")

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = operator.index(index)
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"user {index} out of range for {len(self)} users")
        return self.flat[self.offsets[position] : self.offsets[position + 1]].tolist()

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(mine == list(theirs) for mine, theirs in zip(self, other, strict=True))

    __hash__ = None

    def __repr__(self) -> str:
        return f"UserSequences({len(self):,} users, {len(self.flat):,} interactions)"


def _as_user_sequences(sequences) -> UserSequences:
    """``sequences`` as ``UserSequences`` (a list of lists, as tests and callers may pass, is flattened)."""
    if isinstance(sequences, UserSequences):
        return sequences
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in sequences] or [np.zeros(0, np.int64)])
    return UserSequences(flat, lengths)


@dataclass
class SequentialData:
    """A catalogue, each user's chronological sequence, and the leave-one-out splits.

    Indices are contiguous (users ``0..num_users-1``, items ``0..num_items-1``) so they can index
    embedding tables directly; ``user_ids`` / ``item_ids`` map them back to the raw ids of the source.
    ``splits`` rows are ``(user, history, target)``; a history holds at most ``max_history`` of the
    most recent items. The test split has exactly one row per user, in user order, so
    ``splits["test"][u]`` is user ``u``'s test example.
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    item_texts: list[str]
    item_titles: list[str]
    sequences: UserSequences | list[list[int]]
    splits: DatasetDict
    max_history: int

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return len(_as_user_sequences(self.sequences).flat)

    @property
    def sparsity(self) -> float:
        """Share of empty user x item cells, the number papers quote next to the counts."""
        return 1.0 - self.num_interactions / (self.num_users * self.num_items)

    def stats(self) -> dict[str, float | int]:
        """Counts for metrics files and model cards (flat, so they log as scalars)."""
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "sparsity": self.sparsity,
            **{f"{name}_examples": len(self.splits[name]) for name in ("train", "validation", "test")},
        }

    def summary(self) -> str:
        """One line to print after loading, so a wrong path or filter shows up in the counts."""
        return (
            f"{self.name}: {self.num_users:,} users, {self.num_items:,} items, {self.num_interactions:,} interactions, "
            f"sparsity {self.sparsity:.3%}; train {len(self.splits['train']):,} / validation "
            f"{len(self.splits['validation']):,} / test {len(self.splits['test']):,} examples"
        )

    def train_item_counts(self) -> list[int]:
        """Interactions per item index, counted only on each user's training part ``sequence[:-2]``.

        The popularity baseline must not see the validation/test items, or it would be scored on
        counts that include the very targets it is asked to predict.
        """
        sequences = _as_user_sequences(self.sequences)
        lengths = sequences.lengths
        position = np.arange(len(sequences.flat)) - np.repeat(sequences.offsets[:-1], lengths)  # index within its user
        kept = sequences.flat[position < np.repeat(lengths - 2, lengths)]  # each user's sequence[:-2]
        return np.bincount(kept, minlength=self.num_items).tolist()


# ----- cleaning helpers ------------------------------------------------------------------------------
def _clean(value: str) -> str:
    """Unescape HTML entities (twice-escaped ones too: ``&amp;#8482`` occurs), drop tags, squash whitespace."""
    for _ in range(3):
        unescaped = html.unescape(value)
        if unescaped == value:
            break
        value = unescaped
    if "<" in value:
        value = _TAG.sub(" ", value)
    return _SPACE.sub(" ", value).strip()


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple, np.ndarray)):
        for part in value:
            yield from _flatten(part)
    elif isinstance(value, dict):
        for key, part in value.items():
            yield f"{key}: {part}"
    else:
        yield value


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and np.isnan(value)


def _field_text(name: str, value: Any) -> str:
    """One metadata value as text; lists (nested ones in 2014 categories) become 'A, B' without repeats.

    A list element that already ends a sentence (2018 description paragraphs) is followed by a space
    instead of ', ', so ``["Strong.", "Light."]`` reads "Strong. Light." rather than "Strong., Light.".
    """
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        parts = list(dict.fromkeys(p for p in (_clean(str(v)) for v in _flatten(value) if not _is_missing(v)) if p))
        text = parts[0] if parts else ""
        for part in parts[1:]:
            text += (" " if text[-1] in ".!?;:" else ", ") + part
        return text
    if _is_missing(value):
        return ""
    text = _clean(str(value))
    if name in ("categories", "category"):
        text = re.sub(r",(?=\S)", ", ", text)  # the 2018 files join categories with a bare ','
    return text


def _item_text(field_texts: dict[str, str], fields: list[str]) -> str:
    """``"title: X. brand: Y. categories: A, B"``: one ``name: value`` per non-empty field, in ``fields`` order.

    ``field_texts`` holds each field's :func:`_field_text` (computed once: the title is also kept alone).
    """
    parts = []
    for name in fields:
        text = field_texts[name].rstrip(" .")
        if text.strip(" .,;:-"):  # LETTER-style cleaning leaves '.' for an empty description
            parts.append(f"{name}: {text}")
    return ". ".join(parts)


def _id_strings(series: pd.Series) -> pd.Series:
    """Raw ids as strings; integral floats (ids read back with NaN elsewhere) lose their '.0'."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy()
        if np.all(np.isnan(values) | (values == np.round(values))):
            series = series.astype("Int64")
    return series.astype("string").fillna("").astype(str)


def _factorize_ids(column: pd.Series, name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, raw id per code) of an id column: int64 ids for an integer column, else strings.

    Integer columns are factorised (and later sorted) as integers, so a 100M-row file makes no Python
    object per row; any other column goes through :func:`_id_strings`.
    """
    if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
        codes, uniques = pd.factorize(column.to_numpy())
        return codes, np.asarray(uniques, dtype=np.int64)
    values = _id_strings(column).to_numpy(dtype=object)
    empty = np.flatnonzero(values == "")
    if len(empty):
        raise DataFormatError(
            f"{len(empty):,} rows of {source} have an empty {name!r} (first: data row {empty[0] + 1}); "
            "remove those rows or point the column setting at a complete column"
        )
    return pd.factorize(values)


def _sorted_ids(unique: np.ndarray) -> np.ndarray:
    """Order for raw ids: numeric when every id is an integer (so 0-based shipped ids map to themselves)."""
    strings = unique.astype(str)
    if len(strings) and all(_INTEGER.fullmatch(s) for s in strings):
        return np.array(sorted(strings, key=lambda s: (int(s), s)), dtype=object)
    return np.array(sorted(strings), dtype=object)


def _present_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """The sorted distinct values of ``codes`` (all in ``[0, size)``): ``np.unique`` by counting, 50x faster."""
    return np.flatnonzero(np.bincount(codes, minlength=size))


def _rank_codes(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted raw id strings, index of each row's id into them) for the ids that ``codes`` uses.

    The order is :func:`_sorted_ids`'s: numeric for integer ids (sorted by numpy when they came from
    an integer column), else by string. Computed on the distinct ids only, never per row.
    """
    present = _present_codes(codes, len(uniques))
    mapping = np.full(len(uniques), -1, dtype=np.int64)
    if np.issubdtype(np.asarray(uniques).dtype, np.integer):
        ranked = present[np.argsort(uniques[present], kind="stable")]
        mapping[ranked] = np.arange(len(ranked))
        return uniques[ranked].astype(str).astype(object), mapping[codes]
    names = np.asarray(uniques, dtype=object)[present]
    order = _sorted_ids(names)
    mapping[present] = pd.Series(np.arange(len(order)), index=order).reindex(names).to_numpy()
    return order, mapping[codes]


def _order_values(column: pd.Series, name: str, source: str, fix: str) -> np.ndarray:
    """A sortable int/float array from a numeric or date/time column."""
    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy()
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = column
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    if not stamps.isna().any():
        return stamps.astype("int64").to_numpy()
    bad = int(np.flatnonzero(numeric.isna().to_numpy())[0])
    raise DataFormatError(
        f"column {name!r} in {source} has a value that is neither a number nor a date "
        f"({column.iloc[bad]!r} in data row {bad + 1}); fix the file, or {fix} (None keeps file order)"
    )


def _require(frame: pd.DataFrame, column: str, source: str, fix: str) -> None:
    if column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:30]))
        raise DataFormatError(f"column {column!r} not in {source} (columns: {shown}); {fix}")


# ----- filtering and splitting ---------------------------------------------------------------------
def k_core(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of the interactions that survive iterative k-core filtering.

    Dropping a user can push an item under its threshold and vice versa, so the rule is applied
    until nothing changes. ``users``/``items`` are integer codes. A threshold of 0 disables it.
    """
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=int(users.max(initial=-1)) + 1)
        item_counts = np.bincount(items[keep], minlength=int(items.max(initial=-1)) + 1)
        new = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        if np.array_equal(new, keep):
            return keep
        keep = new


WINDOW_ROWS = 1 << 20  # rows per Arrow chunk of a split: bounds the temporaries and keeps int32 offsets


def _windows(ends: np.ndarray, starts: np.ndarray, flat: np.ndarray, max_history: int) -> pa.ChunkedArray:
    """Histories ``flat[max(start, end - max_history):end]`` per row, built without a Python loop.

    Built ``WINDOW_ROWS`` rows at a time, one Arrow list chunk each: the gather indices of one chunk
    are the only temporary (a whole 70M-row train split at once held four copies of every history),
    and each chunk's int32 offsets stay far below 2**31 however large the split grows.
    """
    chunks = []
    for first in range(0, max(len(ends), 1), WINDOW_ROWS):
        end, start = ends[first : first + WINDOW_ROWS], starts[first : first + WINDOW_ROWS]
        begins = np.maximum(start, end - max_history)
        lengths = end - begins
        offsets = np.zeros(len(end) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(begins - offsets[:-1], lengths)
        index += np.arange(offsets[-1])
        values = pa.array(flat[index], type=pa.int64())
        chunks.append(pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values))
    return pa.chunked_array(chunks, type=pa.list_(pa.int64()))


def _build_splits(flat: np.ndarray, lengths: np.ndarray, max_history: int) -> DatasetDict:
    """Chronological leave-one-out on the concatenated sequences ``flat`` (user u owns ``lengths[u]`` items).

    test = (s[:-1], s[-1]); validation = (s[:-2], s[-2]); train = (s[:j], s[j]) for j = 1..n-3, so the
    validation and test items are never train targets nor inside train histories.
    """
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    users = np.arange(len(lengths), dtype=np.int64)
    per_user = lengths - 3
    train_users = np.repeat(users, per_user)
    train_starts = np.repeat(starts, per_user)
    train_ends = np.arange(len(train_users), dtype=np.int64)  # j = 1 .. n-3 within each user:
    train_ends -= np.repeat(np.cumsum(per_user) - per_user, per_user)  # row within its user ...
    train_ends += train_starts + 1  # ... as a position in ``flat``
    rows = {
        "train": (train_users, train_starts, train_ends),
        "validation": (users, starts, starts + lengths - 2),
        "test": (users, starts, starts + lengths - 1),
    }
    digest = hashlib.blake2b(np.ascontiguousarray(flat).data, digest_size=16)
    digest.update(np.ascontiguousarray(lengths).data)
    digest.update(str(max_history).encode())
    return DatasetDict(
        {
            name: _split(flat, *columns, max_history, fingerprint=f"{digest.hexdigest()}-{name}")
            for name, columns in rows.items()
        }
    )


def _split(
    flat: np.ndarray, users: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_history: int, fingerprint: str
) -> Dataset:
    """One split as an in-memory Arrow table already in ``SPLIT_FEATURES``' types (no cast, no copy).

    The fingerprint is a hash of the sequences the split is cut from: without one, ``Dataset`` pickles
    the whole table to hash it, a transient copy of every split (1.5 GB at 10M interactions).
    """
    table = pa.table(
        {
            "user": pa.array(users, type=pa.int64()),
            "history": _windows(ends, starts, flat, max_history),
            "target": pa.array(flat[ends], type=pa.int64()),
        },
        schema=SPLIT_FEATURES.arrow_schema,
    )
    return Dataset(table, info=DatasetInfo(features=SPLIT_FEATURES), fingerprint=fingerprint)


def _drop_last(flat: np.ndarray, lengths: np.ndarray, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Remove each user's last ``config.drop_last`` items from the concatenated sequences.

    Users keep their index, so every user must keep :data:`MIN_SEQUENCE` interactions; k-core
    filtering with a higher ``min_user_interactions`` is the fix when some would not.
    """
    kept = lengths - config.drop_last
    short = int((kept < MIN_SEQUENCE).sum())
    if short:
        raise DataFormatError(
            f"data.drop_last={config.drop_last} leaves {short:,} users with fewer than {MIN_SEQUENCE} interactions; "
            f"set data.min_user_interactions to at least {config.drop_last + MIN_SEQUENCE} (it is "
            f"{config.min_user_interactions}) or lower data.drop_last"
        )
    ends = np.cumsum(lengths)
    keep = np.ones(len(flat), dtype=bool)
    keep[(ends[:, None] - np.arange(1, config.drop_last + 1)[None, :]).ravel()] = False
    return flat[keep], kept


def _validate(config: DataConfig) -> None:
    if config.format not in FORMATS:
        raise DataFormatError(f"unknown data.format {config.format!r}; use one of {', '.join(FORMATS)}")
    for name in ("min_user_interactions", "min_item_interactions", "max_history", "drop_last"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "max_history" else 0):
            minimum = 1 if name == "max_history" else 0
            raise DataFormatError(f"data.{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(config.deduplicate, bool):
        raise DataFormatError(f"data.deduplicate must be true or false, got {config.deduplicate!r}")
    if config.max_users is not None and (not isinstance(config.max_users, int) or config.max_users < 1):
        raise DataFormatError(f"data.max_users must be a positive integer or None, got {config.max_users!r}")
    if isinstance(config.text_fields, str):
        raise DataFormatError(f"data.text_fields must be a list of column names, got the string {config.text_fields!r}")


def _dataset_name(root: Path) -> str:
    if root.is_dir():
        return root.name
    stem = root.name.split(".")[0]
    return root.parent.name if stem.lower() in ("interactions", "reviews") else stem


def _index_interactions(
    raw: RawData, config: DataConfig, verbose: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, flat item indices, lengths): sorted, de-duplicated, k-core filtered, indexed.

    Its own function so that the per-interaction temporaries (codes, sort orders, masks: a dozen
    arrays of one int64 per interaction) are freed on return, before the item texts and the splits
    are built; at 100M interactions each one is 0.8 GB.
    """
    inter = raw.interactions
    source = raw.interactions_name
    if inter.empty:
        raise DataFormatError(f"{source} has no interactions; check data.path / data.interactions_file")
    _require(inter, raw.user, source, raw.fix["user"])
    _require(inter, raw.item, source, raw.fix["item"])
    if raw.order is not None:
        _require(inter, raw.order, source, raw.fix["order"])

    (user_codes, user_uniques), (item_codes, item_uniques) = (
        _factorize_ids(inter[column], column, source) for column in (raw.user, raw.item)
    )
    rows = np.arange(len(inter), dtype=np.int64)
    order = rows if raw.order is None else _order_values(inter[raw.order], raw.order, source, raw.fix["order"])

    ranked = np.lexsort((rows, order, user_codes))  # per user, chronological; ties keep file order
    del rows, order
    user_codes, item_codes = user_codes[ranked], item_codes[ranked]
    del ranked
    if config.deduplicate:  # one policy for every reader: a user's first interaction with an item is kept
        pair = pd.DataFrame({"u": user_codes, "i": item_codes}).duplicated().to_numpy()
        if verbose and pair.any():
            print(
                f"data.deduplicate: dropped {int(pair.sum()):,} repeated (user, item) rows of {source}, kept the first"
            )
        user_codes, item_codes = user_codes[~pair], item_codes[~pair]
    if config.max_users is not None:
        labels = np.asarray(user_uniques).astype(str).astype(object)
        chosen = set(_sorted_ids(labels)[: config.max_users])
        allowed = np.fromiter((u in chosen for u in labels), dtype=bool, count=len(labels))
        mask = allowed[user_codes]
        user_codes, item_codes = user_codes[mask], item_codes[mask]
    before = (
        len(_present_codes(user_codes, len(user_uniques))),
        len(_present_codes(item_codes, len(item_uniques))),
        len(user_codes),
    )
    min_user = max(config.min_user_interactions, MIN_SEQUENCE)
    keep = k_core(user_codes, item_codes, min_user, config.min_item_interactions)
    if not keep.any():
        raise DataFormatError(
            f"no users left after k-core filtering of {before[0]:,} users / {before[1]:,} items / "
            f"{before[2]:,} interactions (min_user_interactions={config.min_user_interactions}, "
            f"min_item_interactions={config.min_item_interactions}, and every user needs {MIN_SEQUENCE}); "
            "lower data.min_user_interactions / data.min_item_interactions"
            + (" or raise data.max_users" if config.max_users is not None else "")
        )
    user_codes, item_codes = user_codes[keep], item_codes[keep]

    kept = len(user_codes)
    user_ids, user_index = _rank_codes(user_codes, user_uniques)
    item_ids, item_index = _rank_codes(item_codes, item_uniques)
    del user_codes, item_codes
    regroup = np.argsort(user_index, kind="stable")  # rows are already chronological within each user
    flat = item_index[regroup].astype(np.int64)
    del regroup, item_index
    lengths = np.bincount(user_index, minlength=len(user_ids)).astype(np.int64)
    if config.drop_last:
        flat, lengths = _drop_last(flat, lengths, config)
    if verbose and kept < before[2]:
        print(
            f"filtering (min_user_interactions={config.min_user_interactions}, min_item_interactions="
            f"{config.min_item_interactions}, >= {MIN_SEQUENCE} per user) kept {len(user_ids):,} of "
            f"{before[0]:,} users, {len(item_ids):,} of {before[1]:,} items, {kept:,} of "
            f"{before[2]:,} interactions"
        )

    return user_ids, item_ids, flat, lengths


def load_sequential_data(config: DataConfig, verbose: bool = True) -> SequentialData:
    """Read, k-core filter, index and split a data set as ``config`` describes.

    ``data.path`` may name a Hub dataset (``hf://datasets/<owner>/<name>[@<revision>]``): its data files are
    downloaded into the Hub cache and read exactly as a local folder (``hub_data.py``).

    Steps, in order: read (format reader) -> sort each user's interactions by the order column (ties
    keep file order) -> for Amazon reviews drop repeated (user, item) pairs, keeping the earliest ->
    ``max_users`` -> iterative k-core -> index users/items contiguously in raw-id order -> split.
    Users must keep at least 3 interactions (one each for train, validation and test); that rule is
    part of the k-core loop, so users with fewer are dropped and item counts stay consistent.
    Items in the item table that no kept interaction uses are dropped; kept items without a metadata
    row get empty text and a warning. Prints :meth:`SequentialData.summary` when ``verbose``.
    """
    _validate(config)
    # hf://datasets/...: the repository's data files, downloaded once into the Hub cache, then read as a folder
    root, name = download_hub_data(config, verbose) if is_hub_path(config.path) else (Path(config.path), None)
    if not root.exists():
        raise FileNotFoundError(
            f"data path {root} not found; pass the directory that holds interactions.* and items.* "
            "(e.g. examples/data/amazon2018_scientific_5core), a RecBole directory or an Amazon review directory"
        )
    fmt = detect_format(root, config) if config.format == "auto" else config.format
    raw = READERS[fmt](config, root)
    user_ids, item_ids, flat, lengths = _index_interactions(raw, config, verbose)
    raw = replace(raw, interactions=raw.interactions.iloc[:0])  # the frame is done with: free it for what follows
    sequences = UserSequences(flat, lengths)
    texts, titles = _item_metadata(raw, config, item_ids)
    data = SequentialData(
        name=name or _dataset_name(root),
        user_ids=[str(u) for u in user_ids],
        item_ids=[str(i) for i in item_ids],
        item_texts=texts,
        item_titles=titles,
        sequences=sequences,
        splits=_build_splits(flat, lengths, config.max_history),
        max_history=config.max_history,
    )
    if verbose:
        print(data.summary())
    return data


def require_training_examples(data: SequentialData) -> None:
    """Refuse to train on data in which no user has a training example, before any model is built.

    Reading such data is fine (its validation and test splits are whole); training on it would end in the
    Trainer's "max_steps must be set" about an empty data loader, which names neither the cause nor the fix.
    """
    if len(data.splits["train"]) == 0:
        raise DataFormatError(
            f"no training examples: every one of the {data.num_users:,} users has at most {MIN_SEQUENCE} "
            "interactions, and a user's last two are held out (validation, test) while the first has no history "
            "before it. A user needs 4 interactions to give one training example: add data, or set "
            "data.min_user_interactions: 4 to keep only the users that can train"
        )


def _item_metadata(raw: RawData, config: DataConfig, item_ids: np.ndarray) -> tuple[list[str], list[str]]:
    """(text, title) per item index from the item table; empty strings where there is no metadata."""
    empty = [""] * len(item_ids)
    if raw.items is None or raw.items.empty:
        warnings.warn(
            f"no item table found next to {raw.interactions_name}; every item text is empty. Add an items.* "
            "(or <name>.item / meta*.json) file or set data.items_file",
            stacklevel=3,
        )
        return empty, list(empty)
    items, name = raw.items, raw.items_name
    key = raw.item_key if raw.item_key in items.columns else config.item_column
    _require(items, key, f"item table {name}", "set data.item_column (the item id column of both files)")
    fields = list(config.text_fields)
    if not any(f in items.columns for f in fields):
        shown = ", ".join(map(str, items.columns[:30]))
        raise DataFormatError(
            f"none of data.text_fields ({', '.join(fields)}) is a column of {name} (columns: {shown}); "
            "set data.text_fields"
        )
    columns = [c for c in dict.fromkeys([*fields, "title"]) if c in items.columns]
    table = items[columns].assign(_key=_id_strings(items[key]).to_numpy()).drop_duplicates("_key").set_index("_key")
    present = table.index.get_indexer(item_ids) >= 0  # (``Index.isin`` on strings: 15x slower at 1M items)
    missing = int((~present).sum())
    if missing > len(item_ids) // 2:  # not a few items without metadata: the two files spell ids differently
        examples = ", ".join(repr(str(i)) for i in np.asarray(item_ids)[~present][:3])
        theirs = ", ".join(repr(str(i)) for i in table.index[:3])
        raise DataFormatError(
            f"{missing:,} of {len(item_ids):,} items of the interactions have no row in {name}: the interactions "
            f"name items like {examples}, the item table like {theirs}. Ids are matched as exact strings (3.0, "
            "0003 and ' 3' are not 3): write the item id column the same way in both files"
        )
    if missing:
        examples = ", ".join(map(str, np.asarray(item_ids)[~present][:5]))
        warnings.warn(
            f"{missing:,} of {len(item_ids):,} items have no row in {name} (e.g. {examples}); their text is empty",
            stacklevel=3,
        )
    table = table.reindex(item_ids)
    # One row's record at a time (``to_dict("records")`` held a dict per item: 7 GB at 10M items).
    texts, titles = [], []
    names = list(dict.fromkeys([*fields, "title"]))
    for values in zip(*(table[column].tolist() for column in columns), strict=True):
        record = dict(zip(columns, values, strict=True))
        field_texts = {name: _field_text(name, record.get(name)) for name in names}
        texts.append(_item_text(field_texts, fields))
        titles.append(field_texts["title"])
    if texts and not any(texts):
        warnings.warn(
            f"every item's text is empty: the columns {', '.join(fields)} of {name} hold no values. Text codes "
            "(TIGER and the methods over it) need item text; point data.text_fields at the columns that have it",
            stacklevel=3,
        )
    return texts, titles
