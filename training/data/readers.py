"""Source-format readers: each turns files on disk into the same raw frames.

``load_sequential_data`` (in ``data.py``) dispatches on ``data.format`` to one of :data:`READERS`;
everything after reading (filtering, indexing, splitting) is shared, so a RecBole export and the
shipped CSVs go through exactly the same protocol.
"""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .config import DataConfig

FORMATS = ("auto", "table", "recbole", "amazon")
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz")
JSON_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


class DataFormatError(ValueError):
    """Input data that cannot be read as configured; the message says what is wrong and what to change."""


@dataclass
class RawData:
    """What a reader hands over: frames plus which of their columns mean user / item / order."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None
    user: str
    item: str
    order: str | None
    item_key: str
    interactions_name: str
    items_name: str | None
    fix: dict[str, str]  # column role -> how to point the loader at another column (for error messages)


def _open_text(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.name.lower().endswith(".gz") else open(path, encoding="utf-8")
    )


def _json_objects(path: Path, literal_fallback: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; Python-literal lines allowed when ``literal_fallback``."""
    with _open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    value = None
                    if literal_fallback:
                        try:
                            value = ast.literal_eval(line.strip())
                        except (ValueError, SyntaxError, MemoryError, RecursionError):
                            value = None
                    if value is None:
                        raise DataFormatError(
                            f"{path.name} line {number} is not valid JSON ({error.msg} at column {error.colno}): "
                            f"{line.strip()[:80]!r}; fix or delete that line"
                        ) from error
                if not isinstance(value, dict):
                    raise DataFormatError(
                        f"{path.name} line {number} is a {type(value).__name__}, not an object; "
                        'each line must be one record like {"user_id": ..., "item_id": ...}'
                    )
                yield number, value
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise DataFormatError(f"cannot read {path.name} ({error}); is it really a text / .gz file?") from error


def _read_json_lines(path: Path, literal_fallback: bool = False) -> pd.DataFrame:
    return pd.DataFrame([value for _, value in _json_objects(path, literal_fallback)])


def read_table(path: Path) -> pd.DataFrame:
    """A CSV / Parquet / JSON-lines file as a DataFrame, chosen by extension (CSV cells stay strings)."""
    name = path.name.lower()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        pa.ArrowException,
    ) as error:
        raise DataFormatError(
            f"cannot parse {path.name}: {error}; fix the file or convert it to CSV/Parquet"
        ) from error
    if name.endswith(JSON_SUFFIXES):
        return _read_json_lines(path)
    raise DataFormatError(f"cannot read {path.name}: use .csv(.gz), .parquet or .jsonl(.gz)")


def _explicit(directory: Path, name: str, setting: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; check data.{setting} (a file name inside {directory})")
    return path


def _one(candidates: list[Path], what: str, setting: str, directory: Path) -> Path | None:
    """The single candidate file, None if there is none, an error naming them if there are several."""
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DataFormatError(f"several {what} files in {directory} ({names}); pick one with data.{setting}")
    return candidates[0] if candidates else None


def _interactions_path(config: DataConfig, root: Path, candidates: list[Path], what: str, missing: str) -> Path:
    """The interactions file: ``root`` itself, ``data.interactions_file``, or the single candidate found."""
    if root.is_file():
        return root
    if config.interactions_file:
        return _explicit(root, config.interactions_file, "interactions_file")
    found = _one(candidates, what, "interactions_file", root)
    if found is None:
        raise DataFormatError(missing)
    return found


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def _read_tables(config: DataConfig, root: Path) -> RawData:
    directory = root if root.is_dir() else root.parent
    inter = _interactions_path(
        config,
        root,
        [
            p
            for p in _files(directory)
            if p.name.lower().startswith("interactions") and p.name.lower().endswith(TABLE_SUFFIXES)
        ],
        "interactions.*",
        f"no interactions.* file in {directory}; pass the directory that holds interactions.* and items.*, "
        "or set data.interactions_file",
    )
    if config.items_file:
        items_path = _explicit(directory, config.items_file, "items_file")
    else:
        found = [p for p in _files(directory) if p.name.lower().startswith("items")]
        items_path = _one(
            [p for p in found if p.name.lower().endswith(TABLE_SUFFIXES)], "items.*", "items_file", directory
        )
    return RawData(
        interactions=read_table(inter),
        items=read_table(items_path) if items_path else None,
        user=config.user_column,
        item=config.item_column,
        order=config.order_column,
        item_key=config.item_column,
        interactions_name=inter.name,
        items_name=items_path.name if items_path else None,
        fix={"user": "set data.user_column", "item": "set data.item_column", "order": "set data.order_column"},
    )


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; the ``:type`` suffix is dropped."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)  # 3 = QUOTE_NONE
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(
            f"cannot parse RecBole file {path.name}: {error}; atomic files are tab-separated with one header line "
            "like 'user_id:token<TAB>item_id:token<TAB>timestamp:float'"
        ) from error
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    return frame


def _read_recbole(config: DataConfig, root: Path) -> RawData:
    directory = root if root.is_dir() else root.parent
    inter = _interactions_path(
        config,
        root,
        [p for p in _files(directory) if p.suffix == ".inter"],
        ".inter",
        f"no .inter file in {directory}; RecBole atomic data needs <name>.inter (+ <name>.item)",
    )
    item_path = (
        _explicit(directory, config.items_file, "items_file") if config.items_file else inter.with_suffix(".item")
    )
    interactions = _read_atomic(inter)
    # RecBole orders by `timestamp`; a configured order column wins when the file has it.
    if config.order_column and config.order_column in interactions.columns:
        order = config.order_column
    else:
        order = "timestamp" if "timestamp" in interactions.columns else None
    return RawData(
        interactions=interactions,
        items=_read_atomic(item_path) if item_path.is_file() else None,
        user=config.user_column,
        item=config.item_column,
        order=order,
        item_key=config.item_column,
        interactions_name=inter.name,
        items_name=item_path.name if item_path.is_file() else None,
        fix={"user": "set data.user_column", "item": "set data.item_column", "order": "set data.order_column"},
    )


def _first_object(path: Path) -> dict:
    """The first record of a JSON-lines file (or {} when it has none or is not JSON), for format sniffing."""
    try:
        for _, value in _json_objects(path, literal_fallback=True):
            return value
    except DataFormatError:
        pass
    return {}


def _read_amazon(config: DataConfig, root: Path) -> RawData:
    directory = root if root.is_dir() else root.parent
    jsons = [p for p in _files(directory) if p.name.lower().endswith(JSON_SUFFIXES)]
    reviews = _interactions_path(
        config,
        root,
        [p for p in jsons if "meta" not in p.name.lower()],
        "review",
        f"no Amazon review file (*.json[.gz] without 'meta' in its name) in {directory}; set data.interactions_file",
    )
    if config.items_file:
        meta = _explicit(directory, config.items_file, "items_file")
    else:
        meta = _one(
            [p for p in jsons if "meta" in p.name.lower() and p != reviews], "metadata (meta*)", "items_file", directory
        )
    items = _read_json_lines(meta, literal_fallback=True) if meta else None
    if items is not None and "category" in items.columns and "categories" not in items.columns:
        items = items.rename(columns={"category": "categories"})  # 2018 metadata says `category`
    return RawData(
        interactions=_read_json_lines(reviews),
        items=items,
        user="reviewerID",
        item="asin",
        order="unixReviewTime",
        item_key="asin",
        interactions_name=reviews.name,
        items_name=meta.name if meta else None,
        fix=dict.fromkeys(
            ("user", "item", "order"),
            "Amazon review lines need reviewerID, asin and unixReviewTime; for other names use data.format='table'",
        ),
    )


READERS = {"table": _read_tables, "recbole": _read_recbole, "amazon": _read_amazon}


def detect_format(root: Path, config: DataConfig) -> str:
    """Guess the reader from file names (and, for JSON, from the first record's keys)."""
    directory = root if root.is_dir() else root.parent
    if root.is_file():
        files = [root]
    elif config.interactions_file:
        files = [_explicit(directory, config.interactions_file, "interactions_file")]
    else:
        files = _files(directory)
    names = [p.name.lower() for p in files]
    if any(n.endswith(".inter") for n in names):
        return "recbole"
    if root.is_dir() and not config.interactions_file and any(n.startswith("interactions") for n in names):
        return "table"
    for path in files:
        if path.name.lower().endswith(JSON_SUFFIXES) and "meta" not in path.name.lower():
            if "reviewerID" in _first_object(path):
                return "amazon"
    if not root.is_dir() or config.interactions_file:
        if names[0].endswith(TABLE_SUFFIXES):
            return "table"
    listing = ", ".join(p.name for p in files[:10]) or "no files"
    raise DataFormatError(
        f"cannot tell the data format of {root} ({listing}); set data.format to one of table, recbole, amazon "
        "(table: interactions.* + items.*; recbole: <name>.inter + <name>.item; amazon: reviews + meta JSON)"
    )
