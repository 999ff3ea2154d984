"""Data sets on the Hub: push a shipped data folder, read it back by its Hub id, and get exactly the same splits.

These run the real, unpatched huggingface_hub client against tests/hub_server.py, the local in-memory server
that HF_ENDPOINT points at (conftest.py sets HF_ENDPOINT, HF_TOKEN and an empty HF_HOME before anything imports
the client). Nothing is mocked and nothing leaves the machine. The data are the shipped Scientific folder, a
real slice of it, and the Parquet conversion of real Beauty rows in tests/data/parquet.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import DatasetCard, HfApi, ModelCard, snapshot_download

from sidrec.hub import HubPushWarning, push_dataset
from sidrec.training.data import DataConfig, DataFormatError, SequentialData, load_sequential_data
from sidrec.training.data.hub_data import pin_hub_revision

from .conftest import ROOT, SCIENTIFIC
from .test_pipeline import TINY, TINY_DATA, recipe_file

PARQUET = ROOT / "tests" / "data" / "parquet"  # 25 real Beauty users; columns reviewer_id / asin / position
PARQUET_COLUMNS = {
    "user_column": "reviewer_id",
    "item_column": "asin",
    "min_user_interactions": 0,
    "min_item_interactions": 0,
}
SLICE_SETTINGS = {"min_item_interactions": 2}  # 600 users hold no 5-core; 2 keeps 389 users and 834 items


def hub_path(hub_server, name: str, revision: str | None = None) -> str:
    return f"hf://datasets/{hub_server.user}/{name}" + (f"@{revision}" if revision else "")


def assert_same_data(got: SequentialData, want: SequentialData) -> None:
    """The same catalogue, users, texts, sequences and train / validation / test rows, value for value."""
    assert got.name == want.name
    assert got.item_ids == want.item_ids and got.user_ids == want.user_ids
    assert got.item_texts == want.item_texts and got.item_titles == want.item_titles
    assert got.sequences == want.sequences
    for split in ("train", "validation", "test"):
        assert got.splits[split].data.table.equals(want.splits[split].data.table), split
    assert got.stats() == want.stats()


def downloads_since(server, start: int) -> list[str]:
    """Files fetched (GET .../resolve/...) since request number ``start``."""
    return sorted(
        path.rsplit("/", 1)[-1]
        for method, path, status in server.requests[start:]
        if method == "GET" and status == 200 and "/resolve/" in path
    )


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``sidrec.cli:main`` in-process: (exit status, stdout, stderr)."""
    from sidrec.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as stop:
            status = stop.code
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def scientific_repo(hub_server) -> str:
    """The shipped Scientific folder pushed to main of a dataset repository named like the folder."""
    push_dataset(SCIENTIFIC, SCIENTIFIC.name)  # a bare name: the namespace is the token's user
    return f"{hub_server.user}/{SCIENTIFIC.name}"


@pytest.fixture(scope="module")
def scientific_slice(tmp_path_factory) -> Path:
    """A real slice of Scientific: its first 600 users' rows as an uncompressed CSV, and the item table (read it
    with ``SLICE_SETTINGS``)."""
    folder = tmp_path_factory.mktemp("scientific-slice") / "scientific_slice"
    folder.mkdir()
    with gzip.open(SCIENTIFIC / "interactions.csv.gz", "rt") as source:
        lines = source.read().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < 600]
    (folder / "interactions.csv").write_text("\n".join(kept) + "\n")
    shutil.copy(SCIENTIFIC / "items.jsonl.gz", folder / "items.jsonl.gz")
    return folder


def test_a_pushed_folder_loads_by_its_hub_id_with_the_same_splits(hub_server, scientific_repo, scientific):
    start = len(hub_server.requests)
    got = load_sequential_data(DataConfig(path=f"hf://datasets/{scientific_repo}", max_history=20), verbose=False)
    assert_same_data(got, scientific)  # conftest's `scientific`: the same folder read locally
    assert downloads_since(hub_server, start) == ["interactions.csv.gz", "items.jsonl.gz"]  # not the card

    start = len(hub_server.requests)
    again = load_sequential_data(DataConfig(path=f"hf://datasets/{scientific_repo}", max_history=20), verbose=False)
    assert_same_data(again, scientific)
    assert downloads_since(hub_server, start) == []  # read from the Hub cache the second time


def test_the_dataset_card_states_counts_fields_protocol_and_provenance(scientific_repo):
    card = DatasetCard.load(scientific_repo, repo_type="dataset")
    assert card.data.license == "unknown"  # no licence claimed that the data's authors did not give
    assert card.data.task_categories == ["other"] and card.data.size_categories == ["10K<n<100K"]
    assert {"recommendation", "sequential-recommendation", "sidrec"} <= set(card.data.tags)
    text = card.text
    # The counts the shipped README states (8,317 users, 4,344 items, 58,492 interactions), read, not typed
    assert "| in the files | 8,317 | 4,344 | 58,492 |" in text
    assert "| after the protocol below | 8,317 | 4,344 | 58,492 |" in text
    assert "train 33,541, validation 8,317, test 8,317" in text
    assert "| `interactions.csv.gz` | interactions | 58,492 | `user_id`, `item_id`, `position` |" in text
    assert "Chronological **leave-one-out**" in text and "**k-core**" in text
    assert "every user keeps at least 5 interactions" in text
    assert f"path: hf://datasets/{scientific_repo}" in text
    # Provenance and terms are the folder's own README, quoted with its headings two levels down
    assert "#### Provenance\n- Repository `Nishikata97/CollisionGenRec`" in text
    assert "#### Licence / terms" in text and "the terms stated by the data's own README are" in text


def test_the_cards_datasets_snippet_loads_each_table(scientific_repo):
    """The card's `load_dataset(<builder>, data_files=...)` lines, run on the downloaded files (the test server
    speaks no HfFileSystem): each table loads whole with the builder the card names."""
    card = DatasetCard.load(scientific_repo, repo_type="dataset").text
    prefix = f"hf://datasets/{scientific_repo}/"
    assert f'interactions = load_dataset("csv", data_files="{prefix}interactions.csv.gz", split="train")' in card
    assert f'items = load_dataset("json", data_files="{prefix}items.jsonl.gz", split="train")' in card
    assert "configs" not in DatasetCard.load(scientific_repo, repo_type="dataset").data.to_dict()  # CSV + JSON
    folder = Path(snapshot_download(scientific_repo, repo_type="dataset"))
    interactions = load_dataset("csv", data_files=str(folder / "interactions.csv.gz"), split="train")
    items = load_dataset("json", data_files=str(folder / "items.jsonl.gz"), split="train")
    assert interactions.num_rows == 58_492 and interactions.column_names == ["user_id", "item_id", "position"]
    assert items.num_rows == 4_344 and "title" in items.column_names


def test_a_revision_reads_that_branch_or_commit(hub_server, scientific_repo, scientific_slice, scientific):
    """A slice pushed to a branch: @branch reads it, main and @<commit> still read the whole folder."""
    main_commit = HfApi().dataset_info(scientific_repo).sha
    slice_settings = DataConfig(path=str(scientific_slice), **SLICE_SETTINGS)
    push_dataset(scientific_slice, scientific_repo, revision="first-600-users", data=slice_settings)
    # The branch started from main's files: interactions.csv.gz was deleted there, or the readers would find two
    files = HfApi().list_repo_files(scientific_repo, repo_type="dataset", revision="first-600-users")
    assert "interactions.csv" in files and "interactions.csv.gz" not in files

    local = load_sequential_data(slice_settings, verbose=False)
    branch_path = hub_path(hub_server, SCIENTIFIC.name, "first-600-users")
    branch = load_sequential_data(DataConfig(path=branch_path, **SLICE_SETTINGS), verbose=False)
    branch.name = local.name  # the slice's folder name; on the Hub it is the repository's
    assert_same_data(branch, local)
    assert branch.num_users < scientific.num_users
    pinned = load_sequential_data(
        DataConfig(path=hub_path(hub_server, SCIENTIFIC.name, main_commit), max_history=20), verbose=False
    )
    assert_same_data(pinned, scientific)


def test_a_branch_is_pinned_to_its_commit_and_a_commit_or_local_folder_is_left_alone(hub_server, scientific_repo):
    """A run reads a branch as the commit it names now; recipe.yaml and the collaborative cache key keep that."""
    commit = HfApi().dataset_info(scientific_repo).sha
    said: list[str] = []
    for path in (f"hf://datasets/{scientific_repo}", f"hf://datasets/{scientific_repo}@main"):
        config = DataConfig(path=path)
        pin_hub_revision(config, say=said.append)
        assert config.path == f"hf://datasets/{scientific_repo}@{commit}"
    assert said[0] == (
        f"data: hf://datasets/{scientific_repo} is commit {commit} of dataset {scientific_repo}; "
        f"the run reads hf://datasets/{scientific_repo}@{commit}"
    )
    inside = DataConfig(path=f"hf://datasets/{scientific_repo}/interactions.csv.gz")  # a file inside: kept after @
    pin_hub_revision(inside, say=said.append)
    assert inside.path == f"hf://datasets/{scientific_repo}@{commit}/interactions.csv.gz"
    for unchanged in (f"hf://datasets/{scientific_repo}@{commit}", str(SCIENTIFIC)):
        config = DataConfig(path=unchanged)
        pin_hub_revision(config, say=said.append)
        assert config.path == unchanged
    assert len(said) == 3


def test_push_dataset_from_the_command_line_with_a_recipes_column_names(hub_server, tmp_path):
    recipe = tmp_path / "beauty-parquet.yaml"
    recipe.write_text(yaml.safe_dump({"name": "parquet", "data": {"path": "unused", **PARQUET_COLUMNS}}))
    status, out, err = run_cli(["push-dataset", str(PARQUET), "beauty-parquet", "--recipe", str(recipe)])
    assert status == 0, err
    repo_id = f"{hub_server.user}/beauty-parquet"
    assert f"A recipe reads it with data.path: hf://datasets/{repo_id}" in out

    local = load_sequential_data(DataConfig(path=str(PARQUET), **PARQUET_COLUMNS), verbose=False)
    got = load_sequential_data(DataConfig(path=f"hf://datasets/{repo_id}", **PARQUET_COLUMNS), verbose=False)
    assert got.name == "beauty-parquet" and local.name == "parquet"  # a data set is named after its repository
    got.name = local.name
    assert_same_data(got, local)
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert "The user is `reviewer_id`, the item `asin`, and `position` orders" in card.text
    assert "The data folder had no README" in card.text and "No licence was given" in card.text
    # Two Parquet tables: the header's `configs` let `load_dataset(repo, "items")` pick each (on the downloaded copy)
    assert [config["config_name"] for config in card.data.configs] == ["interactions", "items"]
    folder = snapshot_download(repo_id, repo_type="dataset")
    assert load_dataset(folder, "items", split="train").num_rows == 233
    assert load_dataset(folder, split="train").column_names == ["reviewer_id", "asin", "position"]  # the default


def test_a_data_folder_with_a_subfolder_warns_that_it_is_not_uploaded(hub_server, scientific_slice, tmp_path):
    folder = tmp_path / "with_notes"
    shutil.copytree(scientific_slice, folder)
    (folder / "raw").mkdir()
    (folder / "raw" / "reviews.json").write_text("{}\n")
    with pytest.warns(HubPushWarning, match=r"subfolders \(raw\) that are not uploaded"):
        push_dataset(folder, "with-notes", data=DataConfig(path=str(folder), **SLICE_SETTINGS))
    files = HfApi().list_repo_files(f"{hub_server.user}/with-notes", repo_type="dataset")
    assert sorted(files) == [".gitattributes", "README.md", "interactions.csv", "items.jsonl.gz"]


FAST = [
    "quantizer.epochs=20",
    "training.epochs=1",
    "evaluation.max_validation_users=50",
    "evaluation.max_test_users=50",
]


@pytest.mark.slow
def test_a_recipe_trains_on_a_hub_id(hub_server, scientific_repo, tmp_path):
    """`sidrec train` with data.path on the Hub (the TINY recipe, shortened): the run reads the same data as the
    local folder and its recipe.yaml names the Hub id pinned to the commit it read."""
    out = tmp_path / "run"
    data_path = f"hf://datasets/{scientific_repo}"
    overrides = [*TINY, *FAST, f"data.path={data_path}", f"output_dir={out}"]
    status, out_text, err = run_cli(["train", "--config", str(recipe_file(tmp_path)), *overrides])
    assert status == 0, err
    commit = HfApi().dataset_info(scientific_repo).sha
    assert f"data: {data_path} is commit {commit}" in out_text  # the run says which commit of the repository it read
    # ... and its recipe.yaml names that commit, not the branch, which may hold other files tomorrow
    assert yaml.safe_load((out / "recipe.yaml").read_text())["data"]["path"] == f"{data_path}@{commit}"
    card = ModelCard.load(out / "model" / "README.md")  # the card links the dataset repository, not "<name>@<commit>"
    assert card.data.datasets == [scientific_repo]
    assert card.data.eval_results[0].dataset_type == scientific_repo
    metrics = json.loads((out / "metrics.json").read_text())
    settings = dict(item.removeprefix("data.").split("=", 1) for item in TINY_DATA if item.startswith("data."))
    settings = {key: yaml.safe_load(value) for key, value in settings.items()} | {"path": str(SCIENTIFIC)}
    local = load_sequential_data(DataConfig(**settings), verbose=False)
    for key, value in local.stats().items():
        assert metrics[f"data/{key}"] == pytest.approx(value), key
    assert 0 <= metrics["test/recall@10"] <= 1


# ----- bad inputs (rows of docs/bad-inputs.md) ---------------------------------------------------------------------


def test_an_unknown_dataset_repository_names_the_fix(hub_server):
    with pytest.raises(FileNotFoundError) as error:
        load_sequential_data(DataConfig(path=hub_path(hub_server, "no-such-data")), verbose=False)
    message = str(error.value)
    assert f"dataset repository {hub_server.user}/no-such-data not found" in message
    assert f"sidrec push-dataset <folder> {hub_server.user}/no-such-data" in message and "HF_TOKEN" in message


def test_an_unknown_revision_names_the_fix(hub_server, scientific_repo):
    with pytest.raises(FileNotFoundError) as error:
        load_sequential_data(DataConfig(path=hub_path(hub_server, SCIENTIFIC.name, "v9")), verbose=False)
    message = str(error.value)
    assert f"revision 'v9' not found in the dataset repository {scientific_repo}" in message
    assert f"hf://datasets/{scientific_repo}@main" in message


def test_a_repository_without_data_files_names_the_fix(hub_server):
    api = HfApi()
    repo_id = api.create_repo("only-notes", repo_type="dataset").repo_id
    api.upload_file(path_or_fileobj=b"notes\n", path_in_repo="NOTES.txt", repo_id=repo_id, repo_type="dataset")
    with pytest.raises(FileNotFoundError) as error:
        load_sequential_data(DataConfig(path=f"hf://datasets/{repo_id}"), verbose=False)
    message = str(error.value)
    assert "holds no data file that sidrec reads" in message and "NOTES.txt" in message
    assert f"sidrec push-dataset <folder> {repo_id}" in message


def test_an_interactions_file_not_in_the_repository_names_the_fix(hub_server, scientific_repo):
    config = DataConfig(path=f"hf://datasets/{scientific_repo}", interactions_file="clicks.csv")
    with pytest.raises(FileNotFoundError) as error:
        load_sequential_data(config, verbose=False)
    message = str(error.value)
    assert "data.interactions_file='clicks.csv' is not in" in message
    assert "interactions.csv.gz, items.jsonl.gz" in message and "check data.interactions_file" in message


@pytest.mark.parametrize(
    "path, words",
    [
        ("hf://sidrec-tester/scientific", ["names a model repository", "hf://datasets/sidrec-tester/scientific"]),
        ("hf://datasets/scientific", ["is not a Hub dataset id", "hf://datasets/<owner>/<name>"]),
    ],
    ids=["model-repository", "no-owner"],
)
def test_a_malformed_hub_path_names_the_form(path, words):
    with pytest.raises(DataFormatError) as error:
        load_sequential_data(DataConfig(path=path), verbose=False)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_offline_a_cached_data_set_loads_and_an_uncached_one_names_the_fix(hub_server, scientific_repo, scientific):
    """HF_HUB_OFFLINE=1 (read when huggingface_hub is imported, so in a fresh process): the cache serves a data set
    read before; one never read is a clear error."""
    load_sequential_data(DataConfig(path=f"hf://datasets/{scientific_repo}"), verbose=False)  # in the cache now
    script = f"""
from sidrec.training.data import DataConfig, load_sequential_data
data = load_sequential_data(DataConfig(path="hf://datasets/{scientific_repo}"), verbose=False)
print(data.num_users, data.num_items, data.num_interactions)
try:
    load_sequential_data(DataConfig(path="hf://datasets/{hub_server.user}/never-read"), verbose=False)
except FileNotFoundError as error:
    print(error)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    counts, message = done.stdout.strip().splitlines()[-2:]
    assert counts == f"{scientific.num_users} {scientific.num_items} {scientific.num_interactions}"
    assert "HF_HUB_OFFLINE is set" in message and "not in the local Hub cache" in message


def test_push_dataset_of_a_folder_sidrec_cannot_read_creates_nothing(hub_server, tmp_path):
    folder = tmp_path / "items_only"
    folder.mkdir()
    shutil.copy(SCIENTIFIC / "items.jsonl.gz", folder / "items.jsonl.gz")
    status, _, err = run_cli(["push-dataset", str(folder), "items-only"])
    assert status == 2 and "Traceback" not in err
    assert "cannot tell the data format of" in err and "table: interactions.* + items.*" in err
    assert ("dataset", f"{hub_server.user}/items-only") not in hub_server.repos

    status, _, err = run_cli(["push-dataset", str(tmp_path / "missing"), "missing"])
    assert status == 2 and "is not a directory; pass a data folder" in err


def test_a_hub_path_with_an_interactions_file_path_names_the_fix():
    config = DataConfig(path="hf://datasets/someone/data", interactions_file="raw/clicks.csv")
    with pytest.raises(DataFormatError, match=r"put the folder in data.path \(hf://datasets/someone/data/raw\)"):
        load_sequential_data(config, verbose=False)


def test_no_warning_when_pushing_a_plain_folder(hub_server, scientific_slice):
    with warnings.catch_warnings():
        warnings.simplefilter("error", HubPushWarning)
        push_dataset(scientific_slice, "plain-slice", data=DataConfig(path=str(scientific_slice), **SLICE_SETTINGS))
