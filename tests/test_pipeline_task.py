"""The ``sequential-recommendation`` pipeline: the same answers as ``sidrec.Recommender``, by raw id or title.

Real Scientific test users ranked by a trained tiny SID-T5 (tests/test_model.py's ``trained_model``) and the
session's SASRec run, through ``transformers.pipeline``; bad inputs get Recommender's own messages; the model
directories the training pipeline saves (tests/test_bad_inputs.py's ``served_run``, the SASRec run) load as
the pipeline with ``trust_remote_code`` where ``import sidrec`` fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from sidrec import SemanticIDTokenizer, SequentialRecommendationPipeline, SIDT5ForConditionalGeneration
from sidrec.modeling.pipeline_sequential_recommendation import TASK, add_pipeline_code
from sidrec.recommender import Recommender
from sidrec.training.data import write_item_table, write_user_table

from .conftest import tiny_config
from .test_bad_inputs import served_run  # noqa: F401  (the fixture: a tiny SID-T5 with a user token, saved by a run)
from .test_model import trained_model  # noqa: F401  (the fixture: a tiny SID-T5 fitted for 30 steps)

KEYS = {"item_id", "title", "score"}


def as_dicts(rows) -> list[dict]:
    """Recommender rows in the pipeline's form."""
    return [{"item_id": row.item_id, "title": row.title, "score": row.score} for row in rows]


@pytest.fixture(scope="module")
def users(scientific) -> tuple[list[list[str]], list[str]]:
    """16 real test users: their histories as raw item ids (oldest first) and their raw user ids."""
    test = scientific.splits["test"]
    rows = [test[i] for i in range(16)]
    histories = [[scientific.item_ids[item] for item in row["history"]] for row in rows]
    return histories, [scientific.user_ids[row["user"]] for row in rows]


@pytest.fixture(scope="module")
def sasrec_users(sasrec_run) -> list[list[str]]:
    """16 real test users of the SASRec run's own slice of Scientific, as raw item ids."""
    from sidrec.training.data import DataConfig, load_sequential_data
    from sidrec.training.recipe import load_recipe

    recipe = load_recipe(sasrec_run[0] / "recipe.yaml")
    data = load_sequential_data(DataConfig(**recipe.to_dict()["data"]), verbose=False)
    test = data.splits["test"]
    return [[data.item_ids[item] for item in test[i]["history"]] for i in range(16)]


@pytest.fixture(scope="module")
def served_users(served_run) -> tuple[list[list[str]], list[str]]:  # noqa: F811
    """8 real test users of the served run's slice: histories as raw item ids, and raw user ids."""
    from sidrec.training.data import DataConfig, load_sequential_data
    from sidrec.training.recipe import load_recipe

    recipe = load_recipe(served_run / "recipe.yaml")
    data = load_sequential_data(DataConfig(**recipe.to_dict()["data"]), verbose=False)
    rows = [data.splits["test"][i] for i in range(8)]
    histories = [[data.item_ids[item] for item in row["history"]] for row in rows]
    return histories, [data.user_ids[row["user"]] for row in rows]


@pytest.fixture(scope="module")
def sid_dir(trained_model, tokenizer, scientific, tmp_path_factory) -> Path:  # noqa: F811
    """The trained SID-T5 saved as a run saves it (model, tokenizer, items.jsonl), then given the pipeline code."""
    directory = tmp_path_factory.mktemp("sid") / "model"
    trained_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    write_item_table(directory, scientific.item_ids, scientific.item_titles)
    add_pipeline_code(directory)
    return directory


@pytest.fixture(scope="module")
def sid_pipe(sid_dir):
    return pipeline(TASK, model=str(sid_dir), pipeline_class=SequentialRecommendationPipeline)


@pytest.fixture(scope="module")
def sid_recommender(sid_dir):
    return Recommender.from_pretrained(sid_dir)


@pytest.fixture(scope="module")
def sasrec_pipe(sasrec_run):
    """The session's SASRec run as saved by the training pipeline."""
    return pipeline(TASK, model=str(sasrec_run[0] / "model"), pipeline_class=SequentialRecommendationPipeline)


@pytest.fixture(scope="module")
def sasrec_recommender(sasrec_run):
    return Recommender.from_pretrained(sasrec_run[0] / "model")


def test_importing_sidrec_registers_the_task():
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.check_task(TASK)[1]["impl"] is SequentialRecommendationPipeline


@pytest.mark.parametrize("exclude_history", [False, True])
def test_sid_t5_pipeline_equals_the_recommender_on_real_users(sid_pipe, sid_recommender, users, exclude_history):
    histories, _ = users
    got = sid_pipe(histories, top_k=10, exclude_history=exclude_history)
    want = sid_recommender.recommend_batch(histories, top_k=10, exclude_history=exclude_history)
    assert got == [as_dicts(rows) for rows in want]  # the same items, titles and scores, to the last bit
    assert all(len(rows) == 10 for rows in got) or exclude_history
    assert len({row["item_id"] for rows in got for row in rows}) > 10  # not one list for everybody


@pytest.mark.parametrize("exclude_history", [False, True])
def test_sasrec_pipeline_equals_the_recommender_on_real_users(
    sasrec_pipe, sasrec_recommender, sasrec_users, exclude_history
):
    histories = sasrec_users
    got = sasrec_pipe(histories, top_k=20, exclude_history=exclude_history)
    want = sasrec_recommender.recommend_batch(histories, top_k=20, exclude_history=exclude_history)
    assert got == [as_dicts(rows) for rows in want] and all(len(rows) == 20 for rows in got)
    if exclude_history:
        assert all(not {row["item_id"] for row in rows} & set(h) for rows, h in zip(got, histories))


def test_dmrec_t5_pipeline_equals_the_recommender(tokenizer, title_embeddings, scientific, users):
    from .test_dmrec import dmrec_t5

    model = dmrec_t5(tokenizer, title_embeddings).eval()
    model.generation_config.num_beams = 10
    table = (scientific.item_ids, scientific.item_titles)
    pipe = SequentialRecommendationPipeline(model=model, tokenizer=tokenizer, item_table=table, device="cpu")
    recommender = Recommender(model, tokenizer, *table)
    histories = users[0][:6]
    assert pipe(histories, top_k=5) == [as_dicts(rows) for rows in recommender.recommend_batch(histories, top_k=5)]


def test_one_history_gives_one_list_and_a_batch_one_list_per_history(sid_pipe, sid_recommender, users):
    history = users[0][0]
    single = sid_pipe(history, top_k=5)
    assert isinstance(single, list) and len(single) == 5 and all(set(row) == KEYS for row in single)
    assert all(isinstance(row["score"], float) for row in single)
    assert single == as_dicts(sid_recommender.recommend(history, top_k=5))
    assert sid_pipe([history], top_k=5) == [single]  # a batch of one is a list holding that list
    assert sid_pipe(tuple(history), top_k=5) == single
    batch = sid_pipe(users[0][:3], top_k=4)
    assert len(batch) == 3 and all(len(rows) == 4 for rows in batch)
    assert [row["score"] for row in single] == sorted((row["score"] for row in single), reverse=True)


def test_titles_in_give_what_their_item_ids_give(sid_pipe, scientific, users):
    title_of = dict(zip(scientific.item_ids, scientific.item_titles))
    counts = Counter(scientific.item_titles)
    histories = [h for h in users[0] if all(title_of[raw] and counts[title_of[raw]] == 1 for raw in h)]
    assert len(histories) >= 4  # real users whose every item has a title of its own
    titles = [[title_of[raw] for raw in history] for history in histories]
    assert sid_pipe(titles, by="title", top_k=5) == sid_pipe(histories, top_k=5)
    assert sid_pipe(titles[0], by="title", top_k=5) == sid_pipe(histories[0], top_k=5)


def test_a_title_two_items_share_is_refused_with_their_ids(sid_pipe, scientific):
    title, count = Counter(t for t in scientific.item_titles if t).most_common(1)[0]
    assert count > 1  # the real Scientific catalogue repeats some titles
    ids = [raw for raw, t in zip(scientific.item_ids, scientific.item_titles) if t == title]
    with pytest.raises(ValueError, match=f"is shared by {count} items") as caught:
        sid_pipe([title], by="title")
    assert repr(title) in str(caught.value) and all(raw in str(caught.value) for raw in ids[:5])
    assert "by='item_id'" in str(caught.value)


def test_an_unknown_title_is_refused_by_name(sid_pipe, scientific):
    unique = next(t for t, n in Counter(scientific.item_titles).items() if n == 1 and t)
    with pytest.raises(ValueError, match=r"history 0: unknown title 'No Such Gadget'.*items.jsonl"):
        sid_pipe(["No Such Gadget"], by="title")
    with pytest.raises(ValueError, match=r"did you mean"):  # a change of case is named, never taken
        sid_pipe([unique.upper()], by="title")
    with pytest.raises(ValueError, match=r"history 1: title 12 is a int"):
        sid_pipe([[unique], [12]], by="title")


BAD_CALLS = [  # (pipeline input, keyword arguments): each refused with the Recommender's own words
    ([], {}),
    ("A", {}),
    (7, {}),
    ([1.5], {}),
    ([True], {}),
    (["not-an-item"], {}),
    ([["ITEM"], []], {}),
    (["ITEM"], {"top_k": 0}),
    (["ITEM"], {"top_k": 2.5}),
    (["ITEM"], {"num_beams": 0}),
    (["ITEM"], {"top_k": 11}),  # beyond the model's 10 beams
    (["ITEM"], {"user": "A1"}),  # a user for a model without a user token
]


def with_real_item(value, real: str):
    """``value`` with every ``"ITEM"`` replaced by a real item id of the catalogue."""
    if isinstance(value, list):
        return [with_real_item(entry, real) for entry in value]
    return real if value == "ITEM" else value


def recommender_call(recommender, inputs, options):
    """The same request to the Recommender (a batch when the pipeline input is one)."""
    options = dict(options)
    user = options.pop("user", None)
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], list):
        return recommender.recommend_batch(inputs, **options)
    return recommender.recommend(inputs, user=user, **options)


@pytest.mark.parametrize("inputs, options", BAD_CALLS)
def test_bad_inputs_get_the_recommenders_message(sid_pipe, sid_recommender, scientific, inputs, options):
    inputs = with_real_item(inputs, scientific.item_ids[3])
    with pytest.raises(ValueError) as expected:
        recommender_call(sid_recommender, inputs, options)
    with pytest.raises(ValueError) as got:
        sid_pipe(inputs, **options)
    assert str(got.value) == str(expected.value)


def test_bad_pipeline_arguments_are_refused_by_name(sid_pipe, sasrec_pipe, users, sasrec_users):
    history = users[0][0]
    with pytest.raises(ValueError, match=r"by must be one of \('item_id', 'title'\)"):
        sid_pipe(history, by="name")
    with pytest.raises(ValueError, match="inputs must be one history"):
        sid_pipe({"history": history})
    with pytest.raises(ValueError, match=r"num_beams sets beam search; this model \(SASRec\)"):
        sasrec_pipe(sasrec_users[0], num_beams=5)


def test_a_user_token_model_serves_raw_user_ids_as_the_recommender(fitted, scientific, users, tmp_path):
    tokenizer = SemanticIDTokenizer(
        item_codes=fitted.codes, num_levels=4, codebook_size=32, max_history=20, num_user_buckets=8
    )
    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer)).eval()
    model.generation_config.num_beams = 10
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    write_item_table(tmp_path, scientific.item_ids, scientific.item_titles)
    write_user_table(tmp_path, scientific.user_ids)
    pipe = pipeline(TASK, model=str(tmp_path))
    recommender = Recommender.from_pretrained(tmp_path)
    histories, user_ids = users
    assert pipe(histories[0], user=user_ids[0], top_k=5) == as_dicts(
        recommender.recommend(histories[0], 5, user=user_ids[0])
    )
    assert pipe(histories[:4], user=user_ids[:4], top_k=5) == [
        as_dicts(rows) for rows in recommender.recommend_batch(histories[:4], user_ids[:4], top_k=5)
    ]
    with pytest.raises(ValueError, match="unknown user id"):
        pipe(histories[0], user="no-such-user")
    with pytest.raises(ValueError, match="takes one user per history"):
        pipe(histories[:2], user=user_ids[0])
    with pytest.raises(ValueError, match="got 1 users for 2 histories"):
        pipe(histories[:2], user=user_ids[:1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(histories[0], top_k=5)
    assert any("pass user=<raw user id>" in str(w.message) for w in caught)


def test_an_id_table_with_reordered_lines_is_refused_not_served(sasrec_run, served_run, tmp_path):  # noqa: F811
    """Lines of items.jsonl / users.jsonl out of index order would map every index to another raw id."""
    import shutil

    from sidrec.training.errors import ModelDirectoryError

    for source, table in ((sasrec_run[0] / "model", "items.jsonl"), (served_run / "model", "users.jsonl")):
        directory = tmp_path / table
        shutil.copytree(source, directory)
        lines = (directory / table).read_text().splitlines()
        (directory / table).write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")  # a swap: same rows
        with pytest.raises(ModelDirectoryError, match=rf'{table} line 1 is not a row like {{"index": 0,'):
            Recommender.from_pretrained(directory)
        with pytest.raises(ValueError, match=r"line 1 is not a row like .*lines reordered"):
            pipeline(TASK, model=str(directory), pipeline_class=SequentialRecommendationPipeline)


def test_a_semantic_id_model_without_its_tokenizer_is_refused(trained_model, scientific):  # noqa: F811
    with pytest.raises(ValueError, match="needs the tokenizer saved with it"):
        SequentialRecommendationPipeline(model=trained_model, device="cpu")


def test_add_pipeline_code_needs_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        add_pipeline_code(tmp_path)


@pytest.mark.slow
def test_every_trained_model_directory_loads_as_the_pipeline_without_sidrec(
    served_run,  # noqa: F811
    sasrec_run,
    served_users,
    sasrec_users,
    tmp_path,
):
    """The training pipeline's own model directories (SID-T5 with a user token, SASRec) carry the pipeline:
    where `import sidrec` fails, they load from their own code and answer as the Recommender does."""
    sid_dir, sasrec_dir = served_run / "model", sasrec_run[0] / "model"
    for directory in (sid_dir, sasrec_dir):
        config = json.loads((directory / "config.json").read_text())
        assert config["custom_pipelines"][TASK]["impl"] == (
            "pipeline_sequential_recommendation.SequentialRecommendationPipeline"
        )
        assert {"pipeline_sequential_recommendation.py", "raw_id_recommender.py", "ranking.py", "items.jsonl"} <= {
            path.name for path in directory.iterdir()
        }
    histories, user_ids = served_users[0][:4], served_users[1][:4]
    sid, sasrec = Recommender.from_pretrained(sid_dir), Recommender.from_pretrained(sasrec_dir)
    want = {
        "sid": [as_dicts(rows) for rows in sid.recommend_batch(histories, user_ids, top_k=5)],
        "sasrec": [as_dicts(rows) for rows in sasrec.recommend_batch(sasrec_users[:4], top_k=5, exclude_history=True)],
    }
    script = f"""
import json, sys
sys.modules["sidrec"] = None  # make `import sidrec` fail
try:
    import sidrec
    raise SystemExit("sidrec importable")
except ImportError:
    pass
from transformers import pipeline
sid = pipeline(model={str(sid_dir)!r}, trust_remote_code=True)
sasrec = pipeline(model={str(sasrec_dir)!r}, trust_remote_code=True)
for pipe in (sid, sasrec):
    assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
    assert type(pipe.model).__module__.startswith("transformers_modules"), type(pipe.model).__module__
got = {{
    "sid": sid({histories!r}, user={user_ids!r}, top_k=5),
    "sasrec": sasrec({sasrec_users[:4]!r}, top_k=5, exclude_history=True),
}}
try:
    sid(["No Such Gadget"], by="title", user={user_ids[0]!r})
except ValueError as error:
    got["title_error"] = str(error)
print(json.dumps(got))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["sid"] == want["sid"] and got["sasrec"] == want["sasrec"]
    assert got["title_error"].startswith("history 0: unknown title 'No Such Gadget'")


@pytest.mark.slow
def test_a_sasrec_pipeline_from_the_hub_reads_its_item_table_there(hub_server, sasrec_pipe, sasrec_users, tmp_path):
    """SASRec has no tokenizer: loaded by repository id, the pipeline downloads items.jsonl from the repository."""
    from huggingface_hub import HfApi

    directory = tmp_path / "sasrec"
    sasrec_pipe.save_pretrained(directory)
    repo_id = f"{hub_server.user}/tiny-sasrec-pipeline"
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(directory), repo_id=repo_id)
    pipe = pipeline(TASK, model=repo_id)  # sidrec is imported: its registered pipeline serves the repository
    assert type(pipe).__module__ == SequentialRecommendationPipeline.__module__
    assert pipe(sasrec_users[:3], top_k=5) == sasrec_pipe(sasrec_users[:3], top_k=5)


def test_a_config_read_with_sidrec_imported_leaves_out_its_saved_pipeline_copy(sid_dir):
    """The installed task serves the model; config.json keeps the entry for processes without sidrec."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(sid_dir)
    saved = json.loads((sid_dir / "config.json").read_text())["custom_pipelines"]
    assert TASK in saved and TASK not in config.custom_pipelines
    assert config.to_dict()["custom_pipelines"] == saved  # a re-saved config still names the copy
    config.custom_pipelines = {"other-task": {"impl": "x.Y"}}
    assert config.custom_pipelines == {"other-task": {"impl": "x.Y"}}
    pipe = pipeline(TASK, model=str(sid_dir))  # the must-show call: the task alone, no trust_remote_code
    assert type(pipe).__module__ == SequentialRecommendationPipeline.__module__
