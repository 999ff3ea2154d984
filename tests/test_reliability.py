"""Defects found by using sidrec as a newcomer would, each with the test that would have caught it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from .test_pipeline import TINY, recipe_file


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["evaluation.ks=[5, 10, 30]"], "evaluation.num_beams >= 30"),
        (["evaluation.ks=[0, 10]"], "positive cut-offs"),
        (["evaluation.ks=[1, 5]"], "must include 10"),
        (["quantizer.epochs=0"], "quantizer.epochs must be at least 1"),
        (["training.objectives={ce: 1.0, soda: {temprature: 0.5}}"], "objective 'soda'.*temprature"),
        (["training.objectives={ce: 1.0, dmrec: {stratgy: mddm}}"], "objective 'dmrec'.*stratgy"),
        (["training.eval_every_epochs=false"], "unknown recipe key training.eval_every_epochs"),
    ],
)
def test_bad_settings_fail_in_one_line_before_any_work(tmp_path, overrides, message):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    recipe_error = ValueError  # RecipeError is a ValueError; objective options raise ValueError too
    with pytest.raises(recipe_error, match=message):
        run(load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path / 'run'}", *overrides]))
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.parametrize("top_k", [0, -3, 2.5])
def test_top_k_must_be_a_positive_count(tiny_model, tokenizer, top_k):
    with pytest.raises(ValueError, match="top_k must be a positive number"):
        tiny_model.recommend([[1, 2]], tokenizer, top_k=top_k)
    with pytest.raises(ValueError, match="top_k must be a positive number"):
        tiny_model.recommend_with_generate([[1, 2]], tokenizer, top_k=top_k)


def test_radix_keys_that_would_overflow_int64_are_refused():
    from sidrec import SemanticIDTokenizer

    codes = torch.zeros((2, 8), dtype=torch.long)
    codes[1, 0] = 1
    with pytest.raises(ValueError, match="do not fit one 64-bit key"):
        SemanticIDTokenizer(item_codes=codes, num_levels=8, codebook_size=256)
    SemanticIDTokenizer(item_codes=codes[:, :7], num_levels=7, codebook_size=256)  # 256^7 fits


def test_two_local_encoders_in_same_named_directories_get_different_cache_keys(tmp_path):
    from sidrec.training.embeddings import cache_key, encoder_identity, resolve_text_model

    first, second = tmp_path / "a" / "encoder", tmp_path / "b" / "encoder"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    texts = ["a lamp", "a chair"]
    assert cache_key(str(first), texts, 32) != cache_key(str(second), texts, 32)
    assert cache_key("org-a/minilm", texts, 32) != cache_key("org-b/minilm", texts, 32)
    packaged = resolve_text_model(None)  # the default keeps the key earlier runs cached under (its name)
    assert encoder_identity(packaged) == os.path.basename(packaged)
    assert encoder_identity(str(first)) == str(first.resolve())


def test_fitting_codes_leaves_the_callers_generator_alone(title_embeddings):
    from sidrec.tokenization.configuration_quantizer import SemanticIDQuantizerConfig
    from sidrec.training.fit_quantizer import fit_quantizer

    config = SemanticIDQuantizerConfig(input_dim=title_embeddings.size(1), hidden_dims=[32], latent_dim=8)
    config.num_levels, config.codebook_size = 2, 16
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = fit_quantizer(title_embeddings[:500], config, epochs=1, seed=7)
    assert torch.equal(torch.rand(3), expected)  # the fit did not reseed the global generator
    second = fit_quantizer(title_embeddings[:500], config, epochs=1, seed=7)
    assert torch.equal(first.codes, second.codes)  # and is still deterministic for its seed


def test_embedding_a_local_model_does_not_set_hf_hub_offline_for_the_process(scientific, monkeypatch, tmp_path):
    from sidrec.training.embeddings import embed_texts

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    embed_texts(scientific.item_titles[:4], max_seq_length=16, cache_dir=None, show_progress_bar=False)
    assert "HF_HUB_OFFLINE" not in os.environ


@pytest.fixture(scope="module")
def user_token_run(tmp_path_factory):
    """A tiny run whose model reads a user token, evaluated with 10 beams and a show_user past the test set."""
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    out = tmp_path_factory.mktemp("users")
    overrides = [o for o in TINY if not o.startswith("evaluation.num_beams")]
    overrides += ["model.num_user_buckets=8", "evaluation.num_beams=10", "evaluation.ks=[5, 10]"]
    overrides += ["evaluation.show_user=99999", "training.epochs=1", f"output_dir={out}"]
    metrics = run(load_recipe(recipe_file(out), overrides))  # finishes: the printout cannot fail the run
    return out, metrics


def test_recommender_serves_a_user_token_model_as_it_was_evaluated(user_token_run):
    """Raw user ids in, bucketed by the model's own rule: ``Recommender`` reproduces metrics.json."""
    from sidrec import load_recommender
    from sidrec.training.data import DataConfig, load_sequential_data
    from sidrec.training.recipe import load_recipe

    out, metrics = user_token_run
    recipe = load_recipe(out / "recipe.yaml")
    data = load_sequential_data(DataConfig(**recipe.to_dict()["data"]), verbose=False)
    test = data.splits["test"].select(range(200))
    recommender = load_recommender(out / "model")
    histories = [[data.item_ids[i] for i in history] for history in test["history"]]
    users = [data.user_ids[u] for u in test["user"]]
    lists = recommender.recommend_batch(histories, users, top_k=5)
    targets = [data.item_ids[t] for t in test["target"]]
    hits = [next((row.rank for row in rows if row.item_id == target), None) for rows, target in zip(lists, targets)]
    assert sum(h is not None for h in hits) / 200 == pytest.approx(metrics["test/recall@5"])
    ndcg = sum(1 / np.log2(h + 1) for h in hits if h is not None) / 200
    assert ndcg == pytest.approx(metrics["test/ndcg@5"])
    with pytest.warns(UserWarning, match="user token"):
        without = recommender.recommend(histories[0], top_k=5)
    assert [row.item_id for row in without] != [] and len(without) == 5
    with pytest.raises(ValueError, match="unknown user id"):
        recommender.recommend(histories[0], top_k=5, user="no-such-user")


def test_exclude_history_drops_the_users_own_items(user_token_run, scientific):
    from sidrec import load_recommender

    out, _ = user_token_run
    recommender = load_recommender(out / "model")
    history = recommender.item_ids[:3]
    with pytest.warns(UserWarning):
        every = recommender.recommend_batch([history], top_k=5, num_beams=10)[0]
    with pytest.warns(UserWarning):
        fresh = recommender.recommend_batch([history], top_k=5, num_beams=10, exclude_history=True)[0]
    assert not {row.item_id for row in fresh} & set(history)
    assert [row.rank for row in fresh] == list(range(1, len(fresh) + 1))
    assert {row.item_id for row in every} - set(history) == {row.item_id for row in fresh}


def test_cli_refuses_a_non_positive_top_k(user_token_run):
    import subprocess
    import sys

    out, _ = user_token_run
    for bad in ("0", "-3"):
        done = subprocess.run(
            [sys.executable, "-m", "sidrec.cli", "recommend", str(out / "model"), "--history", "x", "--top-k", bad],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "must be at least 1" in done.stderr


def _joint_step_gradients(fitted, title_embeddings, scientific, tokenizer) -> torch.Tensor:
    import copy

    from sidrec.training.data import SemanticIDCollator
    from sidrec.training.methods.diger import JointSIDT5, build_uncertainty_decay

    from .conftest import tiny_config

    trainable = copy.deepcopy(tokenizer)
    trainable.quantizer = fitted.quantizer
    rows = [scientific.splits["train"][i] for i in range(256)]
    batch = SemanticIDCollator(trainable, item_index=True)(rows)
    torch.manual_seed(0)
    decay = build_uncertainty_decay("frqud", 3, tokenizer.codebook_size, scale=0.1)
    model = JointSIDT5.from_recommender_config(
        tiny_config(tokenizer), copy.deepcopy(fitted.quantizer), title_embeddings, fitted.codes, decay
    ).train()
    model(**batch).loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_the_joint_step_is_bit_reproducible_in_deterministic_mode(fitted, title_embeddings, scientific, tokenizer):
    """Two CPU threads made the joint step's gradients differ run to run (~1e-9); SIDTrainer trains in
    PyTorch's deterministic mode, in which two identical steps give identical gradients."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        first = _joint_step_gradients(fitted, title_embeddings, scientific, tokenizer)
        second = _joint_step_gradients(fitted, title_embeddings, scientific, tokenizer)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert torch.equal(first, second)


def test_training_switches_deterministic_mode_on_and_restores_it(tokenizer, scientific, tmp_path):
    from transformers import TrainerCallback

    from .test_trainer import make_trainer

    seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(torch.are_deterministic_algorithms_enabled())

    trainer = make_trainer(tokenizer, tmp_path, callbacks=[Probe()])
    trainer.args.max_steps, trainer.args.eval_strategy, trainer.args.save_strategy = 2, "no", "no"
    trainer.args.remove_unused_columns = False
    trainer.train_dataset = scientific.splits["train"].select(range(64))
    assert not torch.are_deterministic_algorithms_enabled()
    trainer.train()
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()


def test_a_failed_save_leaves_the_previous_model_directory_whole(tiny_model, tokenizer, tmp_path):
    from transformers import AutoModel

    from sidrec.training.stages.run_dir import atomic_directory

    model_dir = tmp_path / "model"
    with atomic_directory(model_dir) as staging:
        tiny_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    saved = sorted(path.name for path in model_dir.iterdir())
    assert "model.safetensors" in saved and not list(tmp_path.glob(".model.*"))

    class Crash(Exception):
        pass

    with pytest.raises(Crash), atomic_directory(model_dir) as staging:
        (staging / "config.json").write_text("{half written")
        raise Crash  # the process dies while saving
    assert sorted(path.name for path in model_dir.iterdir()) == saved  # the good model is still there, whole
    assert not list(tmp_path.glob(".model.*"))  # and no staging directory is left behind
    loaded = AutoModel.from_pretrained(model_dir)
    for a, b in zip(tiny_model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)

    with atomic_directory(model_dir) as staging:  # a new save replaces the directory: no stale file survives
        (staging / "config.json").write_text("{}")
    assert [path.name for path in model_dir.iterdir()] == ["config.json"]


def test_fresh_embeddings_are_plain_tensors_like_cached_ones(scientific, tmp_path):
    """A cache miss used to return ``encode``'s inference-mode tensor, which autograd refuses (a slice of
    it fed to the quantizer's encoder raised on a fresh machine, never with a warm cache)."""
    from sidrec.training.embeddings import embed_texts

    titles = scientific.item_titles[:8]
    fresh = embed_texts(titles, max_seq_length=16, cache_dir=str(tmp_path), show_progress_bar=False)
    cached = embed_texts(titles, max_seq_length=16, cache_dir=str(tmp_path), show_progress_bar=False)
    assert not fresh.is_inference() and not cached.is_inference()
    torch.testing.assert_close(fresh, cached)
    layer = torch.nn.Linear(fresh.size(1), 2)
    layer(fresh[:4]).sum().backward()  # a slice of the fresh tensor goes through autograd
    assert layer.weight.grad is not None


class _Interrupted(Exception):
    pass


def test_sharded_embedding_resumes_after_an_interruption(scientific, tmp_path, monkeypatch):
    """A 1M-item catalogue embeds for about an hour on CPU: each finished shard is kept, so a run killed
    half-way re-embeds only the shards it had not finished, and the table equals an uninterrupted one."""
    import sidrec.training.embeddings as embeddings

    titles = scientific.item_titles[:40]  # shards of 16: texts 0-15, 16-31, 32-39
    settings = dict(max_seq_length=16, show_progress_bar=False, shard_size=16)
    whole = embeddings.embed_texts(titles, cache_dir=str(tmp_path / "whole"), **settings)
    encode, calls, interrupt = embeddings._encode, [], [True]

    def failing_second(encoder, texts, *args):
        calls.append(len(texts))
        if len(calls) == 2 and interrupt:  # the first run dies on its second shard
            interrupt.clear()
            raise _Interrupted
        return encode(encoder, texts, *args)

    monkeypatch.setattr(embeddings, "_encode", failing_second)
    with pytest.raises(_Interrupted):
        embeddings.embed_texts(titles, cache_dir=str(tmp_path / "run"), **settings)
    (shards,) = (tmp_path / "run").glob("*.shards")
    assert sorted(path.name for path in shards.iterdir()) == ["shard-00000.safetensors"]  # no half-written file
    calls.clear()
    resumed = embeddings.embed_texts(titles, cache_dir=str(tmp_path / "run"), **settings)
    assert calls == [16, 8]  # only the two missing shards
    assert torch.equal(resumed, whole) and resumed.shape == (40, 384)
    assert not shards.exists() and len(list((tmp_path / "run").glob("*.safetensors"))) == 1
    unsharded = embeddings.embed_texts(titles, cache_dir=None, max_seq_length=16, show_progress_bar=False)
    torch.testing.assert_close(resumed, unsharded, atol=1e-5, rtol=1e-4)  # batch shapes differ, values do not
    calls.clear()
    kept = embeddings.embed_texts(titles, cache_dir=str(tmp_path / "kept"), keep_shards=True, **settings)
    assert isinstance(kept, embeddings.EmbeddingShards) and calls == [16, 16, 8]
    assert torch.equal(kept[:], whole) and len(list((tmp_path / "kept").glob("*.shards/*"))) == 3  # left on disk
    calls.clear()
    assert torch.equal(embeddings.embed_texts(titles, cache_dir=str(tmp_path / "kept"), **settings), whole)
    assert calls == []  # the kept shards are the cache: joined now, not re-embedded


def test_sharded_embedding_splits_shards_across_processes(scientific, tmp_path, monkeypatch):
    """Under ``accelerate launch`` process i embeds shards i, i + n, ...; all of them return the whole table."""
    import accelerate

    import sidrec.training.embeddings as embeddings

    class FakeState:
        def __init__(self, index: int, stop_at_barrier: bool):
            self.process_index, self.num_processes, self.is_main_process = index, 2, index == 0
            self.stop = stop_at_barrier

        def wait_for_everyone(self):
            if self.stop:
                raise _Interrupted  # process 1 has done its share; process 0 runs next

    titles = scientific.item_titles[:40]
    settings = dict(max_seq_length=16, show_progress_bar=False, shard_size=16, cache_dir=str(tmp_path / "run"))
    monkeypatch.setattr(accelerate, "PartialState", lambda: FakeState(1, stop_at_barrier=True))
    with pytest.raises(_Interrupted):
        embeddings.embed_texts(titles, **settings)
    (shards,) = (tmp_path / "run").glob("*.shards")
    assert sorted(path.name for path in shards.iterdir()) == ["shard-00001.safetensors"]
    monkeypatch.setattr(accelerate, "PartialState", lambda: FakeState(0, stop_at_barrier=False))
    table = embeddings.embed_texts(titles, **settings)  # shards 0 and 2, then reads all three
    monkeypatch.undo()
    alone = embeddings.embed_texts(titles, **{**settings, "cache_dir": str(tmp_path / "alone")})
    assert torch.equal(table, alone)
