"""``items.jsonl`` / ``users.jsonl`` beside a model, for the training side: errors as ``ModelDirectoryError``.

A model ranks item indices; these tables are how a saved model speaks the data set's raw ids and shows
titles (``sidrec.Recommender``), and how fine-tuning checks that new data indexes items the same way.
The format, its one reader and its one writer live in the Hub-portable ``modeling/id_tables.py``.
"""

from __future__ import annotations

from pathlib import Path

from ...modeling.id_tables import ITEMS_FILE, USERS_FILE, item_table_of, read_table, write_table
from ..errors import ModelDirectoryError

__all__ = ["ITEMS_FILE", "USERS_FILE", "read_item_table", "read_user_table", "write_item_table", "write_user_table"]


def write_item_table(directory: str | Path, item_ids: list[str], titles: list[str]) -> None:
    """Save raw ids and titles beside a model, so :class:`Recommender` can speak raw ids and show titles.

    The same file a semantic-ID tokenizer saves: a SASRec run (no tokenizer) writes it here.
    """
    write_table(Path(directory) / ITEMS_FILE, "item_id", item_ids, titles)


def read_item_table(directory: str | Path) -> tuple[list[str], list[str]] | None:
    """(raw ids, titles) by item index from :func:`write_item_table`'s file; None when there is none."""
    rows = _rows(Path(directory) / ITEMS_FILE, "item_id")
    return None if rows is None else item_table_of(rows)


def write_user_table(directory: str | Path, user_ids: list[str]) -> None:
    """Save the raw user ids by user index beside a model that reads a user token.

    The user token is ``<u_{index mod buckets}>``; serving a raw user id the way evaluation did needs
    the index the data set gave that user.
    """
    write_table(Path(directory) / USERS_FILE, "user_id", user_ids)


def read_user_table(directory: str | Path) -> list[str] | None:
    """Raw user ids by user index from :func:`write_user_table`'s file; None when there is none."""
    rows = _rows(Path(directory) / USERS_FILE, "user_id")
    return None if rows is None else [str(row["user_id"]) for row in rows]


def _rows(path: Path, key: str) -> list[dict] | None:
    if not path.exists():
        return None
    try:
        return read_table(path, key)
    except ValueError as error:
        raise ModelDirectoryError(str(error)) from None
