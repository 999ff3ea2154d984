"""training/data.py on the shipped data and on real-row fixtures in every supported format.

The fixtures in tests/data/ are format conversions of the first Beauty users (see tests/data/README.md),
so every reader can be checked against the table reader on the same real rows.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from sidrec.training.data import DataConfig, DataFormatError, SequentialData, load_sequential_data

ROOT = Path(__file__).resolve().parents[1]
SCIENTIFIC = ROOT / "examples" / "data" / "amazon2018_scientific_5core"
BEAUTY = ROOT / "examples" / "data" / "amazon_beauty_2014_5core"
FIXTURES = Path(__file__).resolve().parent / "data"
MALFORMED = FIXTURES / "malformed"


def load(path: Path | str, verbose: bool = False, **kwargs) -> SequentialData:
    return load_sequential_data(DataConfig(path=str(path), **kwargs), verbose=verbose)


def raw_sequences(path: Path) -> dict[str, list[str]]:
    """user -> items by position, read with the csv module (independent of the loader)."""
    rows = defaultdict(list)
    with gzip.open(path / "interactions.csv.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            rows[row["user_id"]].append((int(row["position"]), row["item_id"]))
    return {user: [item for _, item in sorted(pairs)] for user, pairs in rows.items()}


def write_csv(path: Path, text: str) -> Path:
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
    return path


# ----- shipped data ------------------------------------------------------------------------------------
def test_scientific_counts_and_summary(scientific):
    data = scientific
    assert (data.num_users, data.num_items, data.num_interactions) == (8317, 4344, 58492)
    # The shipped ids are 0-based and contiguous, so index == raw id.
    assert data.item_ids == [str(i) for i in range(4344)]
    assert data.user_ids == [str(u) for u in range(8317)]
    lengths = [len(s) for s in data.sequences]
    assert min(lengths) == 5 and max(lengths) == 78
    assert len(data.splits["validation"]) == len(data.splits["test"]) == 8317
    assert len(data.splits["train"]) == sum(n - 3 for n in lengths) == 33541
    assert data.stats() == {
        "users": 8317,
        "items": 4344,
        "interactions": 58492,
        "sparsity": pytest.approx(1 - 58492 / (8317 * 4344)),
        "train_examples": 33541,
        "validation_examples": 8317,
        "test_examples": 8317,
    }
    assert data.summary() == (
        "amazon2018_scientific_5core: 8,317 users, 4,344 items, 58,492 interactions, sparsity 99.838%; "
        "train 33,541 / validation 8,317 / test 8,317 examples"
    )
    features = data.splits["train"].features
    assert features["user"].dtype == features["target"].dtype == "int64"
    assert data.splits["train"].data.schema.field("history").type.value_type == "int64"


def test_scientific_user_by_hand(scientific):
    """User 50 has 47 interactions (raw file: `50,130,0` ... `50,357,44`, `50,358,45`, `50,359,46`)."""
    data = scientific
    raw = [int(i) for i in raw_sequences(SCIENTIFIC)["50"]]
    assert data.sequences[50] == raw and len(raw) == 47
    test = data.splits["test"][50]
    validation = data.splits["validation"][50]
    assert test["user"] == validation["user"] == 50
    assert test["target"] == 359 and validation["target"] == 358
    assert test["history"] == raw[26:46] and test["history"][0] == 343 and test["history"][-1] == 358
    assert validation["history"] == raw[25:45] and validation["history"][-1] == 357
    train = data.splits["train"].filter(lambda row: row["user"] == 50)
    assert len(train) == 44
    assert train[0]["history"] == [130] and train[0]["target"] == 314
    assert train["target"] == raw[1:45] and train["target"][-1] == 357
    assert train[-1]["history"] == raw[24:44]  # truncated to the last max_history=20
    assert all(len(h) == min(j + 1, 20) for j, h in enumerate(train["history"]))
    seen = {item for history in train["history"] for item in history} | set(train["target"])
    assert 358 not in seen and 359 not in seen


def test_every_split_row_follows_the_protocol(scientific):
    data = scientific
    test = data.splits["test"].to_pandas()
    assert test["user"].tolist() == list(range(data.num_users))
    assert test["target"].tolist() == [s[-1] for s in data.sequences]
    assert data.splits["validation"]["target"] == [s[-2] for s in data.sequences]
    assert max(len(h) for h in test["history"]) == 20
    train = data.splits["train"].to_pandas()
    expected = [(u, s[max(0, j - 20) : j], s[j]) for u, s in enumerate(data.sequences) for j in range(1, len(s) - 2)]
    assert len(train) == len(expected)
    for (user, history, target), row in zip(expected[::997], train.iloc[::997].itertuples()):
        assert (row.user, list(row.history), row.target) == (user, history, target)


def test_train_item_counts_exclude_validation_and_test(scientific):
    counts = scientific.train_item_counts()
    assert len(counts) == scientific.num_items
    assert sum(counts) == scientific.num_interactions - 2 * scientific.num_users
    expected = Counter(item for seq in scientific.sequences for item in seq[:-2])
    assert all(counts[i] == expected.get(i, 0) for i in range(scientific.num_items))


def test_train_item_counts_by_hand_with_short_sequences(scientific):
    from dataclasses import replace

    # seq[:-2] of each user: [0], [1, 2, 3], [] (a user of two items has no training part), []
    toy = replace(scientific, item_ids=["a", "b", "c", "d", "e"], sequences=[[0, 1, 2], [1, 2, 3, 0, 4], [4, 4], [3]])
    assert toy.train_item_counts() == [1, 1, 1, 1, 0]


def test_beauty_max_users_then_k_core(capsys):
    data = load(BEAUTY, verbose=True, max_users=2000)
    out = capsys.readouterr().out
    assert "kept 490 of 2,000 users" in out and data.summary() in out
    # Independent iterative 5-core of users 0..1999 with pandas.
    frame = pd.read_csv(BEAUTY / "interactions.csv.gz")
    frame = frame[frame["user_id"] < 2000]
    while True:
        keep = (frame.groupby("user_id")["item_id"].transform("size") >= 5) & (
            frame.groupby("item_id")["user_id"].transform("size") >= 5
        )
        if keep.all():
            break
        frame = frame[keep]
    assert (data.num_users, data.num_items, data.num_interactions) == (490, 645, 5198)
    assert data.num_interactions == len(frame)
    assert data.user_ids == [str(u) for u in sorted(frame["user_id"].unique())]
    assert data.item_ids == [str(i) for i in sorted(frame["item_id"].unique())]
    assert min(Counter(i for s in data.sequences for i in s).values()) >= 5
    assert len(data.splits["test"]) == len(data.splits["validation"]) == 490
    assert len(data.splits["train"]) == 5198 - 3 * 490
    kept = set(frame["item_id"].astype(str))
    first = data.user_ids[0]
    assert [data.item_ids[i] for i in data.sequences[0]] == [i for i in raw_sequences(BEAUTY)[first] if i in kept]


def test_beauty_full_load_text_and_titles():
    data = load(BEAUTY)
    assert (data.num_users, data.num_items, data.num_interactions) == (22363, 12101, 198502)
    assert len(data.splits["train"]) == 198502 - 3 * 22363
    assert (
        data.item_texts[0] == "title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. brand: OPI. "
        "categories: Beauty, Makeup, Nails, Nail Polish"
    )
    # README: 850 raw titles contain `&amp;`; two are escaped twice (`AVVA&amp;#8482`).
    assert not any("&amp;" in t or "&#39;" in t for t in data.item_titles + data.item_texts)
    assert data.item_titles[7] == "Freeman Facial Charcoal & Black Sugar Polish Mask 6 oz."
    assert data.item_titles[2361].startswith("AVVA\u2122 professional makeup")
    assert "brand: Dr. Scholl's" in data.item_texts[4]
    assert all(t.startswith("title: ") for t, title in zip(data.item_texts, data.item_titles) if title)
    assert [i for i, t in enumerate(data.item_titles) if not t] == [494, 1453, 2014, 5335, 7405, 7409, 9177]
    assert data.item_texts[494].startswith("brand: ") or data.item_texts[494].startswith("categories: ")
    assert not any("\t" in t or "\n" in t for t in data.item_titles)


# ----- every reader on the same real rows ------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    """The table reader on the shipped Beauty CSVs, for the users in the fixtures, keyed by raw Amazon ids."""
    users = int(pd.read_csv(FIXTURES / "recbole" / "beauty_slice.inter", sep="\t").iloc[:, 0].nunique())
    data = load(BEAUTY, max_users=users, min_user_interactions=0, min_item_interactions=0)
    reviewer = pd.read_csv(BEAUTY / "users.csv.gz", dtype=str).set_index("user_id")["reviewer_id"]
    asin = pd.read_json(BEAUTY / "items.jsonl.gz", lines=True, dtype=False).astype({"item_id": str})
    asin = asin.set_index("item_id")["asin"]
    return data, reviewer, asin


def by_raw_ids(data: SequentialData, user_map=None, item_map=None) -> tuple[dict, dict, dict, dict]:
    user_map = user_map if user_map is not None else {}
    item_map = item_map if item_map is not None else {}
    users = [user_map.get(u, u) for u in data.user_ids]
    items = [item_map.get(i, i) for i in data.item_ids]
    sequences = {users[u]: [items[i] for i in seq] for u, seq in enumerate(data.sequences)}
    titles = dict(zip(items, data.item_titles))
    texts = dict(zip(items, data.item_texts))
    tests = {
        users[row["user"]]: ([items[i] for i in row["history"]], items[row["target"]]) for row in data.splits["test"]
    }
    return sequences, titles, texts, tests


READERS = {
    "recbole-dir": (FIXTURES / "recbole", {}),
    "recbole-file": (FIXTURES / "recbole" / "beauty_slice.inter", {"format": "recbole"}),
    "amazon": (FIXTURES / "amazon", {}),
    "amazon-file": (FIXTURES / "amazon" / "beauty_slice_reviews.json.gz", {"format": "amazon"}),
    "parquet": (FIXTURES / "parquet", {"user_column": "reviewer_id", "item_column": "asin", "format": "table"}),
}


@pytest.mark.parametrize("reader", READERS)
def test_readers_agree_with_the_table_reader(reader, reference):
    path, kwargs = READERS[reader]
    data = load(path, min_user_interactions=0, min_item_interactions=0, **kwargs)
    table, reviewer, asin = reference
    expected = by_raw_ids(table, reviewer.to_dict(), asin.to_dict())
    got = by_raw_ids(data)
    assert got[0] == expected[0]  # sequences, in order
    assert got[1] == expected[1]  # titles
    assert got[2] == expected[2]  # texts
    assert got[3] == expected[3]  # test histories and targets
    assert data.num_users == 25 and data.num_items == table.num_items == 233
    assert data.user_ids == sorted(data.user_ids) and data.item_ids == sorted(data.item_ids)  # string order
    assert len(data.splits["train"]) == len(table.splits["train"])
    assert max(len(s) for s in data.sequences) > 20 and max(len(h) for h in data.splits["test"]["history"]) == 20


def test_fixture_titles_keep_entities_unescaped(reference):
    data = load(FIXTURES / "amazon", min_user_interactions=0, min_item_interactions=0)
    titles = dict(zip(data.item_ids, data.item_titles))
    texts = dict(zip(data.item_ids, data.item_texts))
    raw = {}
    with gzip.open(FIXTURES / "amazon" / "beauty_slice_meta.json.gz", "rt") as handle:
        for line in handle:
            record = eval(line, {"__builtins__": {}})  # noqa: S307 - our own fixture, Python-literal lines
            raw[record["asin"]] = record
    escaped = [a for a, r in raw.items() if "&amp;" in r.get("title", "")]
    assert escaped, "the slice should contain a title with &amp;"
    for item in escaped:
        assert "&amp;" not in titles[item] and "&" in titles[item]
        assert texts[item].startswith(f"title: {titles[item].rstrip('. ')}")
    # 2014 metadata: categories are a list of lists; the text joins them with ', '.
    item = escaped[0]
    assert f"categories: {', '.join(raw[item]['categories'][0])}" in texts[item]


# ----- k-core, ordering, ids -----------------------------------------------------------------------------
KCORE_CSV = """
    user_id,item_id,position
    u1,d,4
    u1,c,3
    u1,b,2
    u1,a,1
    u2,a,1
    u2,b,2
    u2,c,3
    u3,a,1
    u3,b,2
    u3,e,3
    u4,c,1
    u4,f,2
    u4,g,3
    u5,e,1
    u5,h,2
"""


def test_k_core_by_hand(tmp_path):
    """min_user=3, min_item=2. Round 1 drops u5 (2 rows) and items d, f, g, h (1 row each); then e has
    1 row and u4 keeps only c, so round 2 drops u4 and e; u3 is left with a, b and goes in round 3.
    The fixed point is u1, u2 x a, b, c. (A single pass would have kept u1..u4.)"""
    write_csv(tmp_path / "interactions.csv", KCORE_CSV)
    with pytest.warns(UserWarning, match="no item table"):
        data = load(tmp_path, min_user_interactions=3, min_item_interactions=2)
    assert data.user_ids == ["u1", "u2"] and data.item_ids == ["a", "b", "c"]
    assert data.sequences == [[0, 1, 2], [0, 1, 2]]  # u1 is listed newest first; position puts it right
    assert data.splits["train"]["target"] == [] and data.splits["validation"]["target"] == [1, 1]
    assert data.item_texts == ["", "", ""]


def test_k_core_disabled_still_needs_three_per_user(tmp_path):
    write_csv(tmp_path / "interactions.csv", KCORE_CSV)
    with pytest.warns(UserWarning):
        data = load(tmp_path, min_user_interactions=0, min_item_interactions=0)
    assert data.user_ids == ["u1", "u2", "u3", "u4"]  # u5 has 2 interactions
    assert data.item_ids == ["a", "b", "c", "d", "e", "f", "g"]  # h only belonged to u5
    assert data.sequences[0] == [0, 1, 2, 3]
    assert data.splits["train"]["target"] == [1]  # only u1 (n=4) has a train example: ([a], b)


def test_numeric_ids_sort_numerically_and_order_column_none_keeps_file_order(tmp_path):
    write_csv(
        tmp_path / "interactions.csv",
        """
        user,item,when
        10,100,3
        10,9,2
        10,20,1
        9,20,5
        9,100,4
        9,9,6
        """,
    )
    write_csv(tmp_path / "items.csv", "item,title\n9,Nine &amp; more\n20,Twenty\n100,Hundred\n7,Unused")
    config = {"user_column": "user", "item_column": "item", "min_user_interactions": 0, "min_item_interactions": 0}
    data = load(tmp_path, order_column="when", **config)
    assert data.user_ids == ["9", "10"] and data.item_ids == ["9", "20", "100"]  # numeric, not string order
    assert data.sequences == [[2, 1, 0], [1, 0, 2]]
    assert data.item_titles == ["Nine & more", "Twenty", "Hundred"]  # item 7 is not in any interaction
    assert data.item_texts[0] == "title: Nine & more"
    data = load(tmp_path, order_column=None, **config)
    assert data.sequences == [[1, 2, 0], [2, 0, 1]]


def test_amazon_2018_style_duplicates_ties_and_html(tmp_path):
    reviews = [
        ("A2", "B01", 300),
        ("A1", "B03", 200),
        ("A1", "B01", 100),
        ("A1", "B02", 200),  # B03/B02 tie: file order
        ("A1", "B01", 400),  # a second review of B01 by A1: dropped, the first (t=100) is kept
        ("A2", "B02", 100),
        ("A2", "B03", 200),
    ]
    with gzip.open(tmp_path / "Tools_5.json.gz", "wt") as handle:
        for user, item, time in reviews:
            handle.write(json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": time, "overall": 5.0}) + "\n")
    meta = [
        {
            "asin": "B01",
            "title": "Drill&amp;#8482 <b>Pro</b>",
            "category": ["Tools", "Power Tools"],
            "description": ["<p>Strong.</p>", "Light."],
            "brand": "Acme",
        },
        {"asin": "B02", "title": "Saw", "category": [], "description": [], "brand": ""},
    ]
    with gzip.open(tmp_path / "meta_Tools.json.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(m) for m in meta) + "\n")
    with pytest.warns(UserWarning, match=r"1 of 3 items have no row in meta_Tools.json.gz \(e.g. B03\)"):
        data = load(tmp_path, min_user_interactions=0, min_item_interactions=0)
    assert data.user_ids == ["A1", "A2"] and data.item_ids == ["B01", "B02", "B03"]
    assert data.sequences == [[0, 2, 1], [1, 2, 0]]
    assert data.item_titles == ["Drill\u2122 Pro", "Saw", ""]
    assert data.item_texts == [
        "title: Drill\u2122 Pro. brand: Acme. categories: Tools, Power Tools. description: Strong. Light",
        "title: Saw",
        "",
    ]


def test_table_formats_jsonl_and_explicit_files(tmp_path):
    rows = [{"user_id": u, "item_id": i, "position": p} for u in range(3) for p, i in enumerate([5, 6, 7])]
    (tmp_path / "clicks.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "catalogue.jsonl").write_text(
        "\n".join(json.dumps({"item_id": i, "title": f"T{i}", "description": "."}) for i in (5, 6, 7)) + "\n"
    )
    data = load(
        tmp_path,
        format="table",
        interactions_file="clicks.jsonl",
        items_file="catalogue.jsonl",
        min_user_interactions=0,
        min_item_interactions=0,
    )
    assert data.item_ids == ["5", "6", "7"] and data.sequences == [[0, 1, 2]] * 3
    assert data.item_texts == ["title: T5", "title: T6", "title: T7"]  # a bare '.' description counts as empty
    assert data.name == tmp_path.name


def test_default_config_is_independent():
    a, b = DataConfig(path="x"), DataConfig(path="y")
    a.text_fields.append("price")
    assert b.text_fields == ["title", "brand", "categories", "description"]


# ----- bad input ---------------------------------------------------------------------------------------------
def _two_files(tmp_path: Path) -> Path:
    write_csv(tmp_path / "interactions.csv", "user_id,item_id,position\n1,1,0")
    write_csv(tmp_path / "interactions.jsonl", "")
    return tmp_path


def _titles_only(tmp_path: Path) -> Path:
    write_csv(tmp_path / "interactions.csv", KCORE_CSV)
    write_csv(tmp_path / "items.csv", "item_id,name\na,Apple")
    return tmp_path


BAD_INPUT = {
    "missing path": (
        lambda tmp: tmp / "nowhere",
        {},
        FileNotFoundError,
        ["nowhere not found", "pass the directory that holds interactions.* and items.*"],
    ),
    "missing item column": (
        lambda tmp: MALFORMED / "missing_item_column.csv",
        {},
        DataFormatError,
        ["column 'item_id' not in missing_item_column.csv (columns: user_id, position)", "set data.item_column"],
    ),
    "broken JSON line": (
        lambda tmp: MALFORMED / "broken_line.jsonl",
        {},
        DataFormatError,
        ["broken_line.jsonl line 3 is not valid JSON", "fix or delete that line"],
    ),
    "bad order value": (
        lambda tmp: MALFORMED / "bad_order.csv",
        {},
        DataFormatError,
        ["column 'position' in bad_order.csv", "'fourth'", "data row 5", "set data.order_column"],
    ),
    "empty user id": (
        lambda tmp: MALFORMED / "empty_user.csv",
        {},
        DataFormatError,
        ["1 rows of empty_user.csv have an empty 'user_id' (first: data row 7)"],
    ),
    "ragged RecBole row": (
        lambda tmp: MALFORMED / "ragged.inter",
        {},
        DataFormatError,
        ["cannot parse RecBole file ragged.inter", "line 6", "tab-separated"],
    ),
    "broken Amazon metadata": (
        lambda tmp: MALFORMED,
        {"format": "amazon", "interactions_file": "reviews_ok.json.gz", "items_file": "broken_meta.json.gz"},
        DataFormatError,
        ["broken_meta.json.gz line 2 is not valid JSON"],
    ),
    "unknown format": (
        lambda tmp: FIXTURES / "recbole",
        {"format": "csv"},
        DataFormatError,
        ["unknown data.format 'csv'", "auto, table, recbole, amazon"],
    ),
    "no users after k-core": (
        lambda tmp: FIXTURES / "recbole",
        {"min_user_interactions": 50},
        DataFormatError,
        ["no users left after k-core", "min_user_interactions=50", "lower data.min_user_interactions"],
    ),
    "undetectable format": (
        lambda tmp: tmp,
        {},
        DataFormatError,
        ["cannot tell the data format", "set data.format"],
    ),
    "missing items file": (
        lambda tmp: FIXTURES / "parquet",
        {"items_file": "nope.parquet"},
        FileNotFoundError,
        ["nope.parquet not found", "data.items_file"],
    ),
    "two interactions files": (
        _two_files,
        {},
        DataFormatError,
        ["several interactions.* files", "interactions.csv, interactions.jsonl", "data.interactions_file"],
    ),
    "wrong item key column": (
        lambda tmp: FIXTURES / "parquet",
        {"user_column": "reviewer_id"},
        DataFormatError,
        ["column 'item_id' not in interactions.parquet (columns: reviewer_id, asin, position)"],
    ),
    "no text field in item table": (
        _titles_only,
        {"min_user_interactions": 0, "min_item_interactions": 0},
        DataFormatError,
        [
            "none of data.text_fields (title, brand, categories, description) is a column of items.csv",
            "(columns: item_id, name)",
        ],
    ),
    "max_history 0": (
        lambda tmp: FIXTURES / "recbole",
        {"max_history": 0},
        DataFormatError,
        ["data.max_history must be an integer >= 1"],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_names_problem_and_fix(case, tmp_path):
    make_path, kwargs, error, fragments = BAD_INPUT[case]
    with pytest.raises(error) as info:
        load(make_path(tmp_path), **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_fixtures_regenerate_identically(tmp_path):
    """tests/data/ is exactly what make_fixtures.py writes from examples/data."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import make_fixtures
    finally:
        sys.path.remove(str(FIXTURES))
    make_fixtures.main(tmp_path)
    for path in sorted(tmp_path.rglob("*")):
        if not path.is_file():
            continue
        committed = FIXTURES / path.relative_to(tmp_path)
        if path.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(committed))
        else:
            assert path.read_bytes() == committed.read_bytes(), committed


def test_user_sequences_read_like_a_list_of_lists():
    import numpy as np

    from sidrec.training.data import UserSequences

    sequences = UserSequences(np.array([4, 2, 7, 1, 1, 3]), np.array([3, 0, 1, 2]))
    assert len(sequences) == 4 and sequences[0] == [4, 2, 7] and sequences[1] == [] and sequences[-1] == [1, 3]
    assert list(sequences) == [[4, 2, 7], [], [1], [1, 3]] and sequences[1:3] == [[], [1]]
    assert sequences == [[4, 2, 7], [], [1], [1, 3]] and sequences != [[4, 2, 7]]
    assert all(type(item) is int for item in sequences[0])  # plain ints, as json and datasets expect
    with pytest.raises(IndexError, match="out of range"):
        sequences[4]
    with pytest.raises(ValueError, match="lengths sum to 5"):
        UserSequences(np.arange(6), np.array([2, 3]))


def test_loaded_sequences_are_compact(scientific):
    from sidrec.training.data import UserSequences

    assert isinstance(scientific.sequences, UserSequences)
    assert scientific.sequences.flat.nbytes == 8 * scientific.num_interactions == 8 * 58_492
