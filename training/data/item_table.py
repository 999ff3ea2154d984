"""``items.jsonl``: the raw item ids and titles saved beside a model, by item index.

A model ranks item indices; this table is how a saved model speaks the data set's raw ids and shows
titles (``sidrec.Recommender``), and how fine-tuning checks that new data indexes items the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...tokenization.tokenization_semantic_id import write_items_file
from ..errors import ModelDirectoryError

ITEMS_FILE = "items.jsonl"


def write_item_table(directory: str | Path, item_ids: list[str], titles: list[str]) -> None:
    """Save raw ids and titles beside a model, so :class:`Recommender` can speak raw ids and show titles.

    The tokenizer's own writer: a SASRec run (no tokenizer) writes the file a semantic-ID tokenizer saves.
    """
    write_items_file(str(Path(directory) / ITEMS_FILE), item_ids, titles)


def read_item_table(directory: str | Path) -> tuple[list[str], list[str]] | None:
    """(raw ids, titles) by item index from :func:`write_item_table`'s file; None when there is none."""
    path = Path(directory) / ITEMS_FILE
    if not path.exists():
        return None
    rows = _read_rows(path, "item_id")
    return [str(row["item_id"]) for row in rows], [row.get("title") or "" for row in rows]


def _read_rows(path: Path, key: str) -> list[dict]:
    """The JSON object of every line of ``path``, each with ``key``; a damaged line names itself."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row = error
        if not isinstance(row, dict) or key not in row:
            raise ModelDirectoryError(
                f'{path} line {number} is not a row like {{"index": ..., "{key}": ...}}: {line[:80]!r}. '
                "The file was edited or truncated; copy it again from the run's model directory"
            )
        rows.append(row)
    return rows


USERS_FILE = "users.jsonl"


def write_user_table(directory: str | Path, user_ids: list[str]) -> None:
    """Save the raw user ids by user index beside a model that reads a user token.

    The user token is ``<u_{index mod buckets}>``; serving a raw user id the way evaluation did needs
    the index the data set gave that user.
    """
    with open(Path(directory) / USERS_FILE, "w") as handle:
        for index, raw_id in enumerate(user_ids):
            handle.write(json.dumps({"index": index, "user_id": raw_id}) + "\n")


def read_user_table(directory: str | Path) -> list[str] | None:
    """Raw user ids by user index from :func:`write_user_table`'s file; None when there is none."""
    path = Path(directory) / USERS_FILE
    if not path.exists():
        return None
    return [str(row["user_id"]) for row in _read_rows(path, "user_id")]
