"""Hub round trips: push, then load into an empty cache, and get the same recommender back.

These run the real, unpatched huggingface_hub and transformers clients against tests/hub_server.py,
a local in-memory server that follows what the pinned client versions call (HF_ENDPOINT, HF_TOKEN
and HF_HOME are set at the top of conftest.py). Nothing is mocked and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import AutoModel, AutoTokenizer

from sidrec import SemanticIDTokenizer, SIDT5ForConditionalGeneration, load_recommender
from sidrec.hub import HubPushWarning, push_recommender
from sidrec.training.data import write_item_table

from .hub_server import git_blob_sha1

CARD = "---\nlibrary_name: sidrec\ntags:\n- recommendation\n- semantic-ids\n---\n# Tiny SID-T5\n\nTest card.\n"


@pytest.fixture(scope="module")
def histories(scientific):
    """20 real Scientific test histories (item indices, oldest first)."""
    test = scientific.splits["test"]
    return [test[i]["history"] for i in range(20)]


@pytest.fixture(scope="module")
def expected(tiny_model, tokenizer, histories):
    """What the local model recommends: every loaded copy must give exactly this."""
    return tiny_model.recommend(histories, tokenizer, top_k=10)


def assert_same_recommender(model, loaded_tokenizer, tiny_model, tokenizer, histories, expected) -> None:
    assert isinstance(model, SIDT5ForConditionalGeneration) and isinstance(loaded_tokenizer, SemanticIDTokenizer)
    reference = tiny_model.state_dict()
    loaded = model.state_dict()
    assert reference.keys() == loaded.keys()
    assert all(torch.equal(reference[name], loaded[name]) for name in reference)
    assert torch.equal(loaded_tokenizer.item_codes, tokenizer.item_codes)
    assert model.generation_config.num_beams == tiny_model.generation_config.num_beams == 10
    got = model.eval().recommend(histories, loaded_tokenizer, top_k=10)  # default beams from generation_config
    assert torch.equal(got.items, expected.items)
    assert torch.equal(got.scores, expected.scores)


def downloads_since(server, start: int) -> set[str]:
    """File names fetched with GET .../resolve/... since request number ``start``."""
    return {
        path.rsplit("/", 1)[-1]
        for method, path, status in server.requests[start:]
        if method == "GET" and status == 200 and "/resolve/" in path
    }


@pytest.mark.slow
def test_push_to_hub_then_from_pretrained_into_an_empty_cache(
    hub_server, tiny_model, tokenizer, histories, expected, tmp_path
):
    repo_id = f"{hub_server.user}/tiny-sid-t5-push-to-hub"
    tiny_model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)

    start = len(hub_server.requests)
    model = AutoModel.from_pretrained(repo_id, cache_dir=tmp_path)
    loaded_tokenizer = AutoTokenizer.from_pretrained(repo_id, cache_dir=tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "item_codes.safetensors"} <= downloads_since(
        hub_server, start
    )
    assert_same_recommender(model, loaded_tokenizer, tiny_model, tokenizer, histories, expected)


@pytest.fixture(scope="module")
def pushed_run(hub_server, tiny_model, tokenizer, scientific, tmp_path_factory):
    """A saved run directory (model, tokenizer, card, item table, a stray pickle) pushed with push_recommender."""
    model_dir = tmp_path_factory.mktemp("run") / "model"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / "README.md").write_text(CARD)
    write_item_table(model_dir, scientific.item_ids, scientific.item_titles)
    (model_dir / "training_args.bin").write_bytes(b"a pickle that must not be uploaded")
    repo_id = f"{hub_server.user}/tiny-sid-t5-run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        commit = push_recommender(model_dir, repo_id)
    return repo_id, model_dir, commit, [w for w in caught if issubclass(w.category, HubPushWarning)]


@pytest.mark.slow
def test_push_recommender_round_trip(pushed_run, tiny_model, tokenizer, histories, expected, tmp_path):
    repo_id, model_dir, commit, pushed_warnings = pushed_run
    expected_files = {p.name for p in model_dir.iterdir()} - {"training_args.bin"} | {".gitattributes"}
    assert set(HfApi().list_repo_files(repo_id)) == expected_files
    assert {
        "item_codes.safetensors",
        "tokenization_semantic_id.py",
        "modeling_sid_t5.py",
        "README.md",
    } <= expected_files
    assert HfApi().model_info(repo_id).sha == commit.oid
    # tiny_model decodes with 10 beams, the class default is 20: said once, not an error
    assert [str(w.message) for w in pushed_warnings if "num_beams=10" in str(w.message) and "default is 20" in str(w)]
    assert len(pushed_warnings) == 1

    model = AutoModel.from_pretrained(repo_id, cache_dir=tmp_path)
    loaded_tokenizer = AutoTokenizer.from_pretrained(repo_id, cache_dir=tmp_path)
    assert_same_recommender(model, loaded_tokenizer, tiny_model, tokenizer, histories, expected)

    # the whole repository is a directory that load_recommender reads (raw ids, titles)
    recommender = load_recommender(snapshot_download(repo_id, cache_dir=tmp_path / "snapshot"))
    rows = recommender.recommend([recommender.item_ids[i] for i in histories[0]], top_k=10)
    assert [recommender.index_of[row.item_id] for row in rows] == expected.items[0].tolist()


def test_push_recommender_to_a_branch_and_as_a_pull_request(pushed_run, tmp_path):
    """A revised card goes to refs/pr/1 or to a branch; main stays as it was."""
    repo_id, model_dir, first, _ = pushed_run
    changed = tmp_path / "model"
    shutil.copytree(model_dir, changed)
    (changed / "README.md").write_text(CARD + "\nRevised.\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HubPushWarning)
        proposal = push_recommender(changed, repo_id, create_pr=True, commit_message="Revise the card")
        branch = push_recommender(changed, repo_id, revision="revised-card")
    assert proposal.pr_url.endswith("/discussions/1") and proposal.pr_revision == "refs/pr/1"
    api = HfApi()
    for revision in ("refs/pr/1", "revised-card"):
        readme = Path(hf_hub_download(repo_id, "README.md", revision=revision, cache_dir=tmp_path / "c")).read_text()
        assert readme.endswith("Revised.\n")
    assert api.model_info(repo_id, revision="revised-card").sha == branch.oid
    assert api.model_info(repo_id).sha == first.oid  # main untouched
    assert Path(hf_hub_download(repo_id, "README.md", cache_dir=tmp_path / "c")).read_text() == CARD


@pytest.mark.slow
def test_trust_remote_code_from_the_hub_without_sidrec(pushed_run, expected, histories, tmp_path):
    """Where `import sidrec` fails, the code pushed beside the weights loads and recommends identically."""
    repo_id = pushed_run[0]
    want = {"items": expected.items[:4].tolist(), "scores": expected.scores[:4].tolist()}
    script = f"""
import json, sys
sys.modules["sidrec"] = None  # make `import sidrec` fail
try:
    import sidrec
    raise SystemExit("sidrec importable")
except ImportError:
    pass
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True, cache_dir={str(tmp_path / "hub")!r})
tokenizer = AutoTokenizer.from_pretrained({repo_id!r}, trust_remote_code=True, cache_dir={str(tmp_path / "hub")!r})
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(tokenizer).__module__.startswith("transformers_modules"), type(tokenizer).__module__
result = model.recommend({histories[:4]!r}, tokenizer, top_k=10)
got = {{"items": result.items.tolist(), "scores": result.scores.tolist()}}
print(json.dumps(got))
want = json.loads({json.dumps(want)!r})
if got != want:
    raise SystemExit(f"different recommendations: {{got}} != {{want}}")
"""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")  # the code must come from the server, not a cache
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == want
    assert (tmp_path / "modules" / "transformers_modules").is_dir()


def test_push_without_tokenizer_files_is_a_clear_error(hub_server, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    repo_id = f"{hub_server.user}/no-tokenizer"
    with pytest.raises(ValueError, match=r"no tokenizer files .*tokenizer\.save_pretrained\(directory\)"):
        push_recommender(tmp_path, repo_id)
    assert ("model", repo_id) not in hub_server.repos  # refused before anything was created


def test_push_without_generation_config_warns(hub_server, tiny_model, tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink()
    with pytest.warns(HubPushWarning, match=r"no generation_config\.json.*num_beams=20"):
        push_recommender(tmp_path, f"{hub_server.user}/no-generation-config")


def test_wrong_token_is_refused_with_401(hub_server, tiny_model):
    repo_id = f"{hub_server.user}/wrong-token"
    with pytest.raises(HfHubHTTPError) as raised:
        HfApi(token="hf_not_the_right_token").create_repo(repo_id)
    assert raised.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as raised:
        tiny_model.push_to_hub(repo_id, token="hf_not_the_right_token")
    assert raised.value.response.status_code == 401
    assert ("model", repo_id) not in hub_server.repos


def test_server_speaks_the_download_protocol(hub_server, tmp_path):
    """ETag = git blob sha1, X-Repo-Commit, Range, and the three 404 kinds the client tells apart."""
    api = HfApi()
    assert api.whoami()["name"] == hub_server.user
    repo_id = api.create_repo(f"{hub_server.user}/protocol").repo_id
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id  # 409 answered with the url
    content = b"0123456789" * 100
    commit = api.upload_file(path_or_fileobj=content, path_in_repo="data/blob.bin", repo_id=repo_id)

    metadata = get_hf_file_metadata(hf_hub_url(repo_id, "data/blob.bin"))
    assert metadata.etag == git_blob_sha1(content) and metadata.commit_hash == commit.oid
    assert metadata.size == len(content)
    request = urllib.request.Request(hf_hub_url(repo_id, "data/blob.bin"), headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == content[10:20]
    assert Path(hf_hub_download(repo_id, "data/blob.bin", cache_dir=tmp_path)).read_bytes() == content

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo_id, "missing.json", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "data/blob.bin", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{hub_server.user}/no-such-repo", "config.json", cache_dir=tmp_path)
    assert [f.path for f in api.list_repo_tree(repo_id, recursive=True)] == [".gitattributes", "data", "data/blob.bin"]

    api.delete_file("data/blob.bin", repo_id)
    assert api.list_repo_files(repo_id) == [".gitattributes"]


@pytest.mark.slow
def test_trainer_push_to_hub_uploads_a_loadable_recommender(
    hub_server, tiny_model, tokenizer, histories, expected, tmp_path
):
    """The stock path: ``TrainingArguments(push_to_hub=True)`` + ``trainer.push_to_hub()`` on an SIDTrainer
    uploads weights, tokenizer (code table), generation config and remote code; it loads back identical."""
    import copy

    from transformers import TrainingArguments

    from sidrec.training.methods import build_objectives
    from sidrec.training.trainer import SIDTrainer

    repo_id = f"{hub_server.user}/tiny-sid-t5-trainer"
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), push_to_hub=True, hub_model_id=repo_id, report_to="none", use_cpu=True
    )
    trainer = SIDTrainer(
        model=copy.deepcopy(tiny_model), args=args, processing_class=tokenizer, objectives=build_objectives({"ce": 1.0})
    )
    trainer.push_to_hub(commit_message="trainer push")
    files = set(HfApi().list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "generation_config.json", "modeling_sid_t5.py"} <= files
    assert {"tokenizer_config.json", "item_codes.safetensors", "README.md"} <= files
    model = AutoModel.from_pretrained(repo_id, cache_dir=tmp_path / "cache")
    loaded_tokenizer = AutoTokenizer.from_pretrained(repo_id, cache_dir=tmp_path / "cache")
    assert_same_recommender(model, loaded_tokenizer, tiny_model, tokenizer, histories, expected)


@pytest.mark.slow
def test_load_recommender_and_the_cli_take_a_hub_id(pushed_run, histories, expected, capsys):
    """`sidrec recommend user/repo` and load_recommender("user/repo") said "no config.json"; from_pretrained took it."""
    from sidrec.cli import main

    repo_id, _, _, _ = pushed_run
    recommender = load_recommender(repo_id)
    raw = [recommender.item_ids[i] for i in histories[0]]
    rows = recommender.recommend(raw, top_k=10)
    assert [recommender.index_of[row.item_id] for row in rows] == expected.items[0].tolist()
    assert main(["recommend", repo_id, "--history", *raw, "--top-k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == [row.item_id for row in rows[:3]]
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub model repository"):
        load_recommender(f"{repo_id}-that-does-not-exist")
