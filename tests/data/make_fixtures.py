"""Regenerate the reader fixtures in tests/data/ from the shipped Beauty data.

Every fixture is a format conversion of the same real rows: the first ``NUM_USERS`` users of
``examples/data/amazon_beauty_2014_5core`` (user_id 0..NUM_USERS-1), all their interactions, and the
metadata of the items they touched, with the real Amazon ids (reviewerID from users.csv.gz, ASIN)
and the real titles / brands / categories. The source has no timestamps, so the timestamps written
here are ordinal: RecBole ``timestamp`` = position, Amazon ``unixReviewTime`` = BASE_EPOCH + position days.
Nothing is invented except those ordinal times and, in ``malformed/``, the deliberately broken files.

Run from the repository root:  .venv/bin/python tests/data/make_fixtures.py
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BEAUTY = ROOT / "examples" / "data" / "amazon_beauty_2014_5core"
HERE = Path(__file__).resolve().parent
NUM_USERS = 25
BASE_EPOCH = 1_262_304_000  # 2010-01-01 00:00:00 UTC
DAY = 86_400


def beauty_slice() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions with reviewer_id/asin/position, item rows of the items they use) for users 0..NUM_USERS-1."""
    inter = pd.read_csv(BEAUTY / "interactions.csv.gz")
    users = pd.read_csv(BEAUTY / "users.csv.gz")
    items = pd.read_json(BEAUTY / "items.jsonl.gz", lines=True, dtype=False)
    inter = (
        inter[inter["user_id"] < NUM_USERS].merge(users, on="user_id").merge(items[["item_id", "asin"]], on="item_id")
    )
    inter = inter.sort_values(["user_id", "position"]).reset_index(drop=True)
    items = items[items["item_id"].isin(inter["item_id"])].sort_values("item_id").reset_index(drop=True)
    return inter, items


def _gzip_text(path: Path, text: str) -> None:
    """gzip with mtime 0, so regenerating gives identical bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(text.encode("utf-8"))


def _one_line(value: object) -> str:
    """A metadata value for a tab-separated RecBole cell (tabs/newlines would break the row)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, list):
        value = ", ".join(value)
    return re.sub(r"\s+", " ", str(value)).strip()


def write_recbole(inter: pd.DataFrame, items: pd.DataFrame, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Rows sorted by ASIN, not by time, so a reader that ignores `timestamp` gets the sequences wrong.
    rows = inter.sort_values(["asin", "reviewer_id"], kind="stable")
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{r.reviewer_id}\t{r.asin}\t{r.position}" for r in rows.itertuples()]
    (out / "beauty_slice.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq"]
    for r in items.itertuples():
        cells = [r.asin, r.title, r.brand, r.categories]
        lines.append("\t".join(_one_line(c) for c in cells))
    (out / "beauty_slice.item").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_amazon(inter: pd.DataFrame, items: pd.DataFrame, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Review lines in ASIN order (the raw dumps are grouped by product, not by user or time).
    rows = inter.sort_values(["asin", "reviewer_id"], kind="stable")
    reviews = [
        json.dumps({"reviewerID": r.reviewer_id, "asin": r.asin, "unixReviewTime": BASE_EPOCH + r.position * DAY})
        for r in rows.itertuples()
    ]
    _gzip_text(out / "beauty_slice_reviews.json.gz", "\n".join(reviews) + "\n")
    # 2014 metadata style: one Python-literal dict per line, categories as a list of lists,
    # salesRank as {category: rank}, keys absent when the value is missing.
    meta = []
    for r in items.itertuples():
        record: dict[str, object] = {"asin": r.asin}
        if r.title:
            record["title"] = r.title
        if isinstance(r.price, float) and r.price == r.price:
            record["price"] = r.price
        if isinstance(r.sales_rank, float) and r.sales_rank == r.sales_rank and isinstance(r.sales_type, str):
            record["salesRank"] = {r.sales_type: int(r.sales_rank)}
        record["categories"] = [list(r.categories)]
        if isinstance(r.brand, str):
            record["brand"] = r.brand
        meta.append(repr(record))
    _gzip_text(out / "beauty_slice_meta.json.gz", "\n".join(meta) + "\n")


def write_parquet(inter: pd.DataFrame, items: pd.DataFrame, out: Path) -> None:
    """Raw ids under non-default column names, to exercise data.user_column / data.item_column."""
    out.mkdir(parents=True, exist_ok=True)
    inter[["reviewer_id", "asin", "position"]].to_parquet(out / "interactions.parquet", index=False, compression="gzip")
    columns = ["asin", "title", "brand", "categories"]
    items[columns].to_parquet(out / "items.parquet", index=False, compression="gzip")


def write_malformed(inter: pd.DataFrame, out: Path) -> None:
    """Small broken files, each with exactly one problem that a test asserts the message names."""
    out.mkdir(parents=True, exist_ok=True)
    head = inter[inter["user_id"] < 3].rename(columns={"reviewer_id": "user", "asin": "item"})

    def csv(frame: pd.DataFrame) -> str:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue()

    # 1. The item column is missing (only user_id and position).
    (out / "missing_item_column.csv").write_text(csv(head[["user_id", "position"]]), encoding="utf-8")
    # 2. A JSON-lines file whose third line is cut off mid-record.
    lines = [
        json.dumps({"user_id": int(r.user_id), "item_id": int(r.item_id), "position": int(r.position)})
        for r in head.itertuples()
    ]
    lines[2] = lines[2][: len(lines[2]) // 2]
    (out / "broken_line.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # 3. An order column with a value that is neither a number nor a date.
    bad = head[["user_id", "item_id", "position"]].astype(str)
    bad.iloc[4, 2] = "fourth"
    (out / "bad_order.csv").write_text(csv(bad), encoding="utf-8")
    # 4. A row with an empty user id.
    empty = head[["user_id", "item_id", "position"]].astype(str)
    empty.iloc[6, 0] = ""
    (out / "empty_user.csv").write_text(csv(empty), encoding="utf-8")
    # 5. A RecBole .inter file whose fifth data row has an extra field.
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    rows += [f"{r.user}\t{r.item}\t{r.position}" for r in head.itertuples()]
    rows[5] += "\t5.0"
    (out / "ragged.inter").write_text("\n".join(rows) + "\n", encoding="utf-8")
    # 6. Amazon metadata with a line that is neither JSON nor a Python literal (the review file is fine).
    reviews = [
        json.dumps({"reviewerID": r.user, "asin": r.item, "unixReviewTime": BASE_EPOCH + r.position * DAY})
        for r in head.itertuples()
    ]
    _gzip_text(out / "reviews_ok.json.gz", "\n".join(reviews) + "\n")
    asins = list(dict.fromkeys(head["item"]))
    meta = [repr({"asin": a, "title": f"item {a}"}) for a in asins]
    meta[1] = meta[1][:-1] + ", 'categories': [['Beauty'"  # unterminated
    _gzip_text(out / "broken_meta.json.gz", "\n".join(meta) + "\n")


def main(out: Path = HERE) -> None:
    inter, items = beauty_slice()
    write_recbole(inter, items, out / "recbole")
    write_amazon(inter, items, out / "amazon")
    write_parquet(inter, items, out / "parquet")
    write_malformed(inter, out / "malformed")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix not in (".py", ".md"))
    print(f"{inter['user_id'].nunique()} users, {len(items)} items, {len(inter)} interactions; fixtures {size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
