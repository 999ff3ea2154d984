"""``items.jsonl`` and ``users.jsonl``: the raw ids (and titles) saved beside a model, one JSON object a line.

A model scores item (and user) indices; these tables are how a saved model speaks the data set's raw ids.
Every row carries its ``index`` and the readers check it against the row's place: a table whose lines were
reordered, dropped or duplicated would otherwise map every index to another item's id, and every
recommendation would name the wrong item without an error. One reader and one writer for both tables and
for every caller (``sidrec.Recommender``, the pipeline, fine-tuning, collaborative embeddings); the module
needs only the standard library because the pipeline ships it beside the weights (``trust_remote_code``).
The semantic-ID tokenizer, which ships on its own, keeps its own reader of ``items.jsonl`` with the same rule.
"""

from __future__ import annotations

import json
import os

ITEMS_FILE = "items.jsonl"  # raw item ids and titles by item index, beside every saved model
USERS_FILE = "users.jsonl"  # raw user ids by user index, beside a model that reads a user token


def write_table(path: str | os.PathLike, key: str, values: list[str], titles: list[str] | None = None) -> None:
    """One ``{"index", key[, "title"]}`` object a line, by index."""
    with open(path, "w") as handle:
        for index, value in enumerate(values):
            row = {"index": index, key: value} | ({"title": titles[index]} if titles is not None else {})
            handle.write(json.dumps(row) + "\n")


def read_table(path: str | os.PathLike, key: str) -> list[dict]:
    """The rows of a table :func:`write_table` wrote, in index order; a damaged line is a ``ValueError``.

    A line that is not a JSON object with ``key``, or whose ``index`` is not its place among the rows,
    names itself, the file and the fix.
    """
    rows: list[dict] = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or key not in row or row.get("index") != len(rows):
                raise ValueError(
                    f'{path} line {number} is not a row like {{"index": {len(rows)}, "{key}": ...}}: '
                    f"{line.strip()[:80]!r}. The file was edited or truncated (or its lines reordered); copy it again "
                    "from the run's model directory"
                )
            rows.append(row)
    return rows


def item_table_of(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(raw item ids, titles) by item index from the rows of ``items.jsonl``."""
    return [str(row["item_id"]) for row in rows], [row.get("title") or "" for row in rows]
