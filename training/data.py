"""Interaction data: readers, k-core filtering and the chronological leave-one-out protocol.

Every reader returns the same two frames (interactions: user, item, order; items: item + text
fields), so filtering and splitting happen once, the same way for every source format:

- ``table``: CSV / CSV.GZ / Parquet / JSONL(.GZ) with named columns (the shipped data);
- ``recbole``: RecBole atomic files ``<name>.inter`` + ``<name>.item``;
- ``amazon``: Amazon review JSON(.GZ) + metadata (the 2014 metadata is Python-literal lines).
"""

from __future__ import annotations

import ast
import gzip
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, Sequence, Value

FORMATS = ("auto", "table", "recbole", "amazon")
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz")


class DataFormatError(ValueError):
    """Input data that cannot be read as configured; the message says what to change."""


@dataclass
class DataConfig:
    """Where the data is and how to cut it (see the module docstring for formats)."""

    path: str
    format: str = "auto"
    interactions_file: str | None = None
    items_file: str | None = None
    user_column: str = "user_id"
    item_column: str = "item_id"
    order_column: str | None = "position"
    text_fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories", "description"])
    min_user_interactions: int = 5
    min_item_interactions: int = 5
    max_history: int = 20
    max_users: int | None = None


@dataclass
class SequentialData:
    """A catalogue, each user's chronological sequence, and the leave-one-out splits.

    ``splits`` rows are ``(user, history, target)`` in contiguous indices; histories hold at most
    ``max_history`` most recent items. Users need 3 interactions (train, validation, test).
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    item_texts: list[str]
    item_titles: list[str]
    sequences: list[list[int]]
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
        return sum(len(s) for s in self.sequences)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.num_interactions / (self.num_users * self.num_items)

    def stats(self) -> dict[str, float | int]:
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "sparsity": self.sparsity,
            **{f"{name}_examples": len(split) for name, split in self.splits.items()},
        }

    def summary(self) -> str:
        return (
            f"{self.name}: {self.num_users:,} users, {self.num_items:,} items, {self.num_interactions:,} interactions, "
            f"sparsity {self.sparsity:.3%}; train {len(self.splits['train']):,} / validation "
            f"{len(self.splits['validation']):,} / test {len(self.splits['test']):,} examples"
        )

    def train_item_counts(self) -> list[int]:
        """Interactions per item in the training part of each sequence (for the popularity baseline)."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        train_items = [item for seq in self.sequences for item in seq[:-2]]
        np.add.at(counts, np.asarray(train_items, dtype=np.int64), 1)
        return counts.tolist()


# ----- readers -------------------------------------------------------------------------------------
def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_json_lines(path: Path, literal_fallback: bool = False) -> pd.DataFrame:
    rows = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                if literal_fallback:
                    try:
                        rows.append(ast.literal_eval(line))
                        continue
                    except (ValueError, SyntaxError):
                        pass
                raise DataFormatError(
                    f"{path.name} line {number} is not valid JSON ({error.msg}); fix or remove that line"
                ) from error
    return pd.DataFrame(rows)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV / Parquet / JSON-lines file as a DataFrame, chosen by extension."""
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found")
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return _read_json_lines(path)
    raise DataFormatError(f"cannot read {path.name}: use .csv(.gz), .parquet or .jsonl(.gz)")


def _find(directory: Path, prefix: str, explicit: str | None, suffixes: tuple[str, ...]) -> Path | None:
    if explicit:
        path = directory / explicit
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; check data.{prefix}_file")
        return path
    matches = sorted(
        p for p in directory.iterdir() if p.name.lower().startswith(prefix) and p.name.lower().endswith(suffixes)
    )
    return matches[0] if matches else None


def _require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    for column, setting in zip(columns, ("user_column", "item_column", "order_column")):
        if column is not None and column not in frame.columns:
            raise DataFormatError(
                f"column {column!r} not in {source} (columns: {', '.join(map(str, frame.columns))}); set data.{setting}"
            )


def _read_tables(config: DataConfig, root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    directory = root if root.is_dir() else root.parent
    inter = root if root.is_file() else _find(directory, "interactions", config.interactions_file, TABLE_SUFFIXES)
    if inter is None:
        raise DataFormatError(f"no interactions.* file in {directory}; pass data.interactions_file or another path")
    items_path = _find(directory, "items", config.items_file, TABLE_SUFFIXES)
    columns = {"user": config.user_column, "item": config.item_column, "order": config.order_column}
    return read_table(inter), (read_table(items_path) if items_path else None), columns


def _read_recbole(config: DataConfig, root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    directory = root if root.is_dir() else root.parent
    inter = root if root.suffix == ".inter" else _find(directory, "", config.interactions_file, (".inter",))
    if inter is None:
        raise DataFormatError(f"no .inter file in {directory}; RecBole atomic data needs <name>.inter (+ <name>.item)")
    item_path = inter.with_suffix(".item")

    def read_atomic(path: Path) -> pd.DataFrame:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    interactions = read_atomic(inter)
    order = "timestamp" if "timestamp" in interactions.columns else None
    columns = {"user": config.user_column, "item": config.item_column, "order": order}
    return interactions, (read_atomic(item_path) if item_path.exists() else None), columns


def _read_amazon(config: DataConfig, root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    directory = root if root.is_dir() else root.parent
    json_suffixes = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
    reviews = root if root.is_file() else _find(directory, "", config.interactions_file, json_suffixes)
    candidates = [
        p for p in sorted(directory.iterdir()) if "meta" in p.name.lower() and p.name.lower().endswith(json_suffixes)
    ]
    if config.items_file:
        candidates = [directory / config.items_file]
    if root.is_dir() and config.interactions_file is None:
        others = [
            p for p in sorted(directory.iterdir()) if p.name.lower().endswith(json_suffixes) and p not in candidates
        ]
        reviews = others[0] if others else None
    if reviews is None:
        raise DataFormatError(f"no Amazon review file (*.json[.gz]) in {directory}; pass data.interactions_file")
    interactions = _read_json_lines(reviews)
    items = _read_json_lines(candidates[0], literal_fallback=True) if candidates else None
    if items is not None and "category" in items.columns and "categories" not in items.columns:
        items = items.rename(columns={"category": "categories"})
    return interactions, items, {"user": "reviewerID", "item": "asin", "order": "unixReviewTime"}


READERS = {"table": _read_tables, "recbole": _read_recbole, "amazon": _read_amazon}


def _detect_format(root: Path) -> str:
    names = [p.name.lower() for p in (root.iterdir() if root.is_dir() else [root])]
    if any(n.endswith(".inter") for n in names):
        return "recbole"
    if any(n.startswith("interactions") for n in names) or (
        root.is_file() and root.name.lower().endswith(TABLE_SUFFIXES)
    ):
        return "table"
    if any("meta" in n for n in names):
        return "amazon"
    raise DataFormatError(
        f"cannot tell the format of {root}; set data.format to one of {', '.join(FORMATS[1:])} "
        "(table: interactions.* + items.*; recbole: <name>.inter + <name>.item; amazon: reviews + meta JSON)"
    )


# ----- filtering and splitting ---------------------------------------------------------------------
def _sort_ids(values: np.ndarray) -> np.ndarray:
    """Unique raw ids, numerically when every id is an integer (so shipped ids keep their order)."""
    unique = pd.unique(values)
    try:
        return np.array(sorted(unique, key=int), dtype=object)
    except (TypeError, ValueError):
        return np.array(sorted(unique, key=str), dtype=object)


def k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Iteratively drop users and items with too few interactions until both thresholds hold."""
    while True:
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        keep = (user_counts >= min_user) & (item_counts >= min_item)
        if keep.all():
            return frame
        frame = frame[keep]


def _item_text(row: dict, fields: list[str]) -> str:
    parts = []
    for name in fields:
        value = row.get(name)
        if isinstance(value, (list, tuple, np.ndarray)):
            value = ", ".join(str(v) for v in value if str(v).strip())
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        value = html.unescape(str(value)).strip().rstrip(".")
        if value:
            parts.append(f"{name}: {value}")
    return ". ".join(parts)


def _build_splits(sequences: list[list[int]], max_history: int) -> DatasetDict:
    features = Features({"user": Value("int64"), "history": Sequence(Value("int64")), "target": Value("int64")})
    rows = {"train": ([], [], []), "validation": ([], [], []), "test": ([], [], [])}
    for user, seq in enumerate(sequences):
        n = len(seq)
        for j in range(1, n - 2):
            rows["train"][0].append(user)
            rows["train"][1].append(seq[max(0, j - max_history) : j])
            rows["train"][2].append(seq[j])
        for name, end in (("validation", n - 2), ("test", n - 1)):
            rows[name][0].append(user)
            rows[name][1].append(seq[max(0, end - max_history) : end])
            rows[name][2].append(seq[end])
    return DatasetDict(
        {
            name: Dataset.from_dict({"user": u, "history": h, "target": t}, features=features)
            for name, (u, h, t) in rows.items()
        }
    )


def load_sequential_data(config: DataConfig, verbose: bool = True) -> SequentialData:
    """Read, k-core filter, index and split a data set as ``config`` describes."""
    root = Path(config.path)
    if not root.exists():
        raise FileNotFoundError(
            f"data path {root} not found; pass the directory that holds interactions.* and items.* "
            "(e.g. examples/data/amazon2018_scientific_5core)"
        )
    fmt = _detect_format(root) if config.format == "auto" else config.format
    if fmt not in READERS:
        raise DataFormatError(f"unknown data.format {config.format!r}; use one of {', '.join(FORMATS)}")
    interactions, items, columns = READERS[fmt](config, root)
    _require_columns(interactions, [columns["user"], columns["item"], columns["order"]], f"the {fmt} interactions")

    frame = pd.DataFrame(
        {
            "user": interactions[columns["user"]].astype(str).to_numpy(),
            "item": interactions[columns["item"]].astype(str).to_numpy(),
            "order": pd.to_numeric(interactions[columns["order"]], errors="coerce").to_numpy()
            if columns["order"]
            else np.arange(len(interactions)),
            "row": np.arange(len(interactions)),
        }
    )
    if frame["order"].isna().any():
        raise DataFormatError(
            f"column {columns['order']!r} has non-numeric values; set data.order_column to a number column"
        )
    frame = frame.sort_values(["user", "order", "row"], kind="stable").drop_duplicates(["user", "item"], keep="first")
    if config.max_users is not None:
        frame = frame[frame["user"].isin(set(_sort_ids(frame["user"].to_numpy())[: config.max_users]))]
    frame = k_core(frame, config.min_user_interactions, config.min_item_interactions)
    counts = frame["user"].value_counts()
    frame = frame[frame["user"].map(counts) >= 3]
    if frame.empty:
        raise DataFormatError(
            f"no users left after k-core filtering (min_user_interactions={config.min_user_interactions}, "
            f"min_item_interactions={config.min_item_interactions}, at least 3 per user); lower the thresholds or "
            "raise data.max_users"
        )

    user_ids = _sort_ids(frame["user"].to_numpy())
    item_ids = _sort_ids(frame["item"].to_numpy())
    user_index = pd.Series(np.arange(len(user_ids)), index=user_ids)
    item_index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    frame = frame.assign(u=user_index.loc[frame["user"]].to_numpy(), i=item_index.loc[frame["item"]].to_numpy())
    frame = frame.sort_values(["u", "order", "row"], kind="stable")
    boundaries = np.flatnonzero(np.diff(frame["u"].to_numpy())) + 1
    sequences = [chunk.tolist() for chunk in np.split(frame["i"].to_numpy(), boundaries)]

    texts, titles = [""] * len(item_ids), [""] * len(item_ids)
    if items is not None:
        item_column = columns["item"] if columns["item"] in items.columns else config.item_column
        _require_columns(items, [None, item_column], "the item table")
        table = items.assign(_key=items[item_column].astype(str)).drop_duplicates("_key").set_index("_key")
        table = table.reindex(item_ids)
        records = table.to_dict("records")
        texts = [_item_text(row, list(config.text_fields)) for row in records]
        titles = [
            html.unescape(str(row.get("title") or "")) if isinstance(row.get("title"), str) else "" for row in records
        ]
        missing = int(table.isna().all(axis=1).sum())
        if missing and verbose:
            print(f"warning: {missing} items have no metadata row; their text is empty")

    data = SequentialData(
        name=root.name if root.is_dir() else root.stem,
        user_ids=[str(u) for u in user_ids],
        item_ids=[str(i) for i in item_ids],
        item_texts=texts,
        item_titles=titles,
        sequences=sequences,
        splits=_build_splits(sequences, config.max_history),
        max_history=config.max_history,
    )
    if verbose:
        print(data.summary())
    return data
