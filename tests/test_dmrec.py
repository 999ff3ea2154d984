"""DMRec: the matching losses by hand, the meta-network's gradients, Mult-VAE and DMRec-T5 round trips."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from sidrec.modeling.gaussian_matching import (
    DiagonalGaussian,
    common_prior,
    kl_divergence,
    kl_to_standard_normal,
    matching_loss,
    wasserstein2,
)

from .conftest import tiny_config

LN4 = math.log(4.0)


def gaussian(means, variances) -> DiagonalGaussian:
    return DiagonalGaussian(torch.tensor([means], dtype=torch.float64), torch.tensor([variances]).log().double())


# q = N([1, 0], diag[1, 4]) and p = N([0, 1], diag[4, 1]): every figure below is worked out on paper.
Q = gaussian([1.0, 0.0], [1.0, 4.0])
P = gaussian([0.0, 1.0], [4.0, 1.0])
KL_Q_PRIOR = 0.5 * ((1 + 1 - 0 - 1) + (0 + 4 - LN4 - 1))  # 0.5 (mu^2 + var - log var - 1), summed
KL_Q_P = 0.5 * ((LN4 - 0 + (1 + 1) / 4 - 1) + (0 - LN4 + (4 + 1) / 1 - 1))  # = 1.75
W2_Q_P = math.sqrt((1 + 1) + ((1 - 2) ** 2 + (2 - 1) ** 2) + 1e-7)  # means differ by (1, -1), stds by (-1, 1)
# Common prior: mean (0.5, 0.5), log-variance (ln 4 / 2, ln 4 / 2), so variance (2, 2).
KL_Q_M = 0.5 * ((math.log(2) + (1 + 0.25) / 2 - 1) + (math.log(2) - LN4 + (4 + 0.25) / 2 - 1))
KL_P_M = 0.5 * ((math.log(2) - LN4 + (4 + 0.25) / 2 - 1) + (math.log(2) + (1 + 0.25) / 2 - 1))


def test_kl_and_wasserstein_by_hand():
    assert KL_Q_P == pytest.approx(1.75)
    assert kl_to_standard_normal(Q).item() == pytest.approx(KL_Q_PRIOR)
    assert kl_divergence(Q, P).item() == pytest.approx(KL_Q_P)
    assert wasserstein2(Q, P).item() == pytest.approx(W2_Q_P)
    middle = common_prior(Q, P)
    assert middle.mean.tolist() == [[0.5, 0.5]] and torch.exp(middle.logvar)[0].tolist() == pytest.approx([2.0, 2.0])
    assert kl_divergence(Q, middle).item() == pytest.approx(KL_Q_M)
    assert kl_divergence(P, middle).item() == pytest.approx(KL_P_M)


@pytest.mark.parametrize(
    "strategy, beta, expected",
    [
        ("none", 1.0, KL_Q_PRIOR),
        ("none", 0.2, 0.2 * KL_Q_PRIOR),
        ("godm", 0.4, KL_Q_PRIOR + 0.4 * W2_Q_P),
        ("cpdm", 0.2, KL_Q_PRIOR + 0.2 * (KL_Q_M + KL_P_M)),
        ("mddm", 0.6, 0.6 * KL_Q_PRIOR + 0.4 * KL_Q_P),
        ("mddm", 0.0, KL_Q_P),
        ("mddm", 1.0, KL_Q_PRIOR),
    ],
)
def test_matching_losses_by_hand(strategy, beta, expected):
    loss, terms = matching_loss(strategy, Q, P, beta)
    assert loss.item() == pytest.approx(expected)
    assert terms["kl_prior"].item() == pytest.approx(KL_Q_PRIOR)


def test_godm_measures_the_collaborative_head_not_the_posterior():
    """The authors' code: the KL is on the combined posterior, W2 on the collaborative head alone."""
    loss, terms = matching_loss("godm", Q, P, 1.0, collaborative=P)
    assert terms["wasserstein"].item() == pytest.approx(math.sqrt(1e-7))
    assert loss.item() == pytest.approx(KL_Q_PRIOR + math.sqrt(1e-7))


def test_losses_average_over_users_and_vanish_when_distributions_coincide():
    both = DiagonalGaussian(torch.cat([Q.mean, P.mean]), torch.cat([Q.logvar, P.logvar]))
    same = DiagonalGaussian(torch.cat([P.mean, P.mean]), torch.cat([P.logvar, P.logvar]))
    assert kl_divergence(both, same).item() == pytest.approx(KL_Q_P / 2)  # user 2 contributes 0
    assert kl_divergence(same, same).item() == 0.0
    assert kl_to_standard_normal(gaussian([0.0, 0.0], [1.0, 1.0])).item() == 0.0
    assert matching_loss("cpdm", same, same, 1.0)[1]["kl_common"].item() == 0.0
    assert matching_loss("mddm", same, same, 0.0)[0].item() == 0.0
    assert wasserstein2(same, same).item() == pytest.approx(math.sqrt(1e-7))


def test_unknown_strategy_and_missing_language_space_are_errors():
    with pytest.raises(ValueError, match="godm"):
        matching_loss("kl", Q, P, 0.5)
    with pytest.raises(ValueError, match="language-space"):
        matching_loss("mddm", Q, None, 0.5)
    from sidrec.training.methods import build_objectives

    with pytest.raises(ValueError, match="<= 1 for mddm"):
        build_objectives({"dmrec": {"strategy": "mddm", "beta": 1.5}})


# ----- Mult-VAE (the paper's setting) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def item_sets(scientific):
    return [sorted(set(sequence)) for sequence in scientific.sequences[:300]]


def mult_vae(num_items, text_embeddings=None, **overrides):
    from sidrec import MultVAEConfig, MultVAEForCollaborativeFiltering

    values = dict(num_items=num_items, hidden_size=32, latent_size=8, meta_hidden_size=16, dropout=0.3)
    values.update(overrides)
    if text_embeddings is not None:
        values["text_embedding_size"] = text_embeddings.size(1)
    torch.manual_seed(0)
    model = MultVAEForCollaborativeFiltering(MultVAEConfig(**values))
    if text_embeddings is not None:
        model.set_item_text_embeddings(text_embeddings)
    return model


def test_mult_vae_input_layer_is_a_linear_layer_on_the_multi_hot_vector(scientific, item_sets):
    """The EmbeddingBag shortcut equals tanh(x W + b) on the dense 0/1 vector, and the loss is the
    multinomial log-likelihood of the user's items."""
    from sidrec.modeling.modeling_mult_vae import pad_item_sets

    model = mult_vae(scientific.num_items).eval()
    items = pad_item_sets(item_sets[:4])
    dense = torch.zeros(4, scientific.num_items)
    for row, chosen in enumerate(item_sets[:4]):
        dense[row, chosen] = 1.0
    hidden = torch.tanh(dense @ model.input_layer.weight + model.input_bias)
    expected = model.collaborative_head(hidden)
    posterior, _, language = model.encode(items)
    assert language is None
    torch.testing.assert_close(posterior.mean, expected.mean)
    output = model(items)
    log_probs = torch.log_softmax(model.decoder(expected.mean), dim=-1)
    torch.testing.assert_close(output.loss, -(log_probs * dense).sum(dim=1).mean())


def test_meta_network_reads_the_sum_of_the_users_item_text_embeddings(scientific, item_sets, title_embeddings):
    """The language space sees the plain sum of the (unpadded) item embeddings, then the meta-network."""
    from sidrec.modeling.modeling_mult_vae import pad_item_sets

    model = mult_vae(scientific.num_items, title_embeddings).eval()
    _, _, language = model.encode(pad_item_sets(item_sets[:4]))
    summed = torch.stack([title_embeddings[chosen].sum(dim=0) for chosen in item_sets[:4]])
    expected = model.meta_network(summed)
    torch.testing.assert_close(language.mean, expected.mean)
    torch.testing.assert_close(language.logvar, expected.logvar)


def test_meta_network_gets_gradients_from_every_strategy(scientific, item_sets, title_embeddings):
    from sidrec.modeling.modeling_mult_vae import pad_item_sets
    from sidrec.training.methods.dmrec import DMRecObjective

    for strategy in ("godm", "cpdm", "mddm"):
        model = mult_vae(scientific.num_items, title_embeddings).train()
        output = model(pad_item_sets(item_sets[:32]))
        loss, figures = DMRecObjective(strategy=strategy, beta=0.5)(model, {}, output)
        loss.backward()
        grads = [p.grad for p in model.meta_network.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), strategy
        assert model.collaborative_head.proj.weight.grad.abs().sum() > 0
        assert "dmrec/kl_prior" in figures


def test_mult_vae_saves_loads_and_recommends_only_unseen_items(scientific, item_sets, title_embeddings, tmp_path):
    from transformers import AutoModel

    model = mult_vae(scientific.num_items, title_embeddings).eval()
    ranked = model.recommend(item_sets[:50], top_k=20).items
    for row, seen in zip(ranked.tolist(), item_sets[:50]):
        assert len(set(row)) == 20 and not set(row) & set(seen)
        assert all(0 <= item < scientific.num_items for item in row)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "MultVAEForCollaborativeFiltering"
    assert torch.equal(loaded.item_text_embeddings, title_embeddings)
    assert torch.equal(loaded.recommend(item_sets[:50], top_k=20).items, ranked)


def test_random_split_is_three_to_one_to_one_and_disjoint(scientific):
    from sidrec.training.data import random_split

    splits = random_split(scientific.sequences, (3, 1, 1), seed=7)
    again = random_split(scientific.sequences, (3, 1, 1), seed=7)
    assert splits["test"]["held_out"] == again["test"]["held_out"]
    for user in range(0, scientific.num_users, 97):
        items = scientific.sequences[user]
        train = splits["train"][user]["items"]
        validation, test = splits["validation"][user]["held_out"], splits["test"][user]["held_out"]
        assert sorted(train + validation + test) == sorted(items)
        assert len(test) == max(1, round(len(items) / 5)) and len(validation) == len(test)
        assert splits["test"][user]["items"] == train  # the model's input at test time: training items only
    five = random_split([[10, 11, 12, 13, 14]], seed=0)
    assert [len(five[name][0]["held_out"]) for name in ("train", "validation", "test")] == [3, 1, 1]
    with pytest.raises(ValueError, match="at least 3"):
        random_split([[1, 2]])


def test_set_ranking_metrics_by_hand():
    from sidrec.training.metrics import ranking_metrics

    ranked = torch.tensor([[5, 1, 7, 2], [3, 4, 6, 8]])
    held_out = torch.tensor([[1, 2, 9], [8, -1, -1]])
    metrics = ranking_metrics(ranked, held_out, ks=(2, 4))
    # user 0: hits at ranks 1 and 3 of 3 relevant; user 1: hit at rank 3 of 1 relevant
    assert metrics["recall@2"] == pytest.approx((1 / 3 + 0) / 2)
    assert metrics["recall@4"] == pytest.approx((2 / 3 + 1) / 2)
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(4, 3) ideal hits
    dcg1 = 1 / math.log2(5)
    assert metrics["ndcg@4"] == pytest.approx((dcg0 / idcg0 + dcg1 / 1.0) / 2)
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)
    assert metrics["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)


# ----- DMRec-T5 ------------------------------------------------------------------------------------
def dmrec_t5(tokenizer, title_embeddings):
    from sidrec import DMRecT5Config, DMRecT5ForConditionalGeneration

    base = tiny_config(tokenizer).to_dict()
    keys = ("num_code_levels", "codebook_size", "num_user_buckets", "d_model", "d_kv", "num_heads", "d_ff")
    values = {key: base[key] for key in keys}
    values.update(num_layers=2, num_decoder_layers=2, dropout_rate=0.0)
    torch.manual_seed(0)
    config = DMRecT5Config(
        num_items=title_embeddings.size(0),
        text_embedding_size=title_embeddings.size(1),
        latent_size=8,
        meta_hidden_size=16,
        **values,
    )
    model = DMRecT5ForConditionalGeneration(config)
    model.set_item_text_embeddings(title_embeddings)
    model.generation_config.num_beams = 10
    return model


@pytest.fixture(scope="module")
def trained_dmrec(tokenizer, title_embeddings, scientific):
    """A DMRec-T5 after a few MDDM steps on real batches (so no output is a fresh-init accident)."""
    from sidrec.training.data import SemanticIDCollator
    from sidrec.training.methods.dmrec import DMRecObjective

    model = dmrec_t5(tokenizer, title_embeddings).train()
    collator = SemanticIDCollator(tokenizer, item_index=True)
    objective = DMRecObjective(strategy="mddm", beta=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = scientific.splits["train"].select(range(256))
    for start in range(0, 256, 64):
        batch = collator([rows[i] for i in range(start, start + 64)])
        output = model(**{k: v for k, v in batch.items() if k != "target_items"})
        loss = output.loss + 0.1 * objective(model, batch, output)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def histories(scientific, count):
    return [scientific.splits["test"][i]["history"] for i in range(count)]


def test_dmrec_t5_meta_network_and_latent_token_get_gradients(tokenizer, title_embeddings, scientific):
    from sidrec.training.data import SemanticIDCollator
    from sidrec.training.methods.dmrec import DMRecObjective

    model = dmrec_t5(tokenizer, title_embeddings).train()
    batch = SemanticIDCollator(tokenizer, item_index=True)([scientific.splits["train"][i] for i in range(16)])
    output = model(**{k: v for k, v in batch.items() if k != "target_items"})
    assert output.posterior.mean.shape == (16, 8)
    assert not model.latent_to_memory.weight.any()  # the latent token starts as a no-op
    output.loss.backward(retain_graph=True)  # the cross-entropy reaches the latent projection
    assert model.latent_to_memory.weight.grad.abs().sum() > 0
    model.zero_grad()
    DMRecObjective(strategy="mddm", beta=0.5)(model, batch, output)[0].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.meta_network.parameters())
    assert model.collaborative_head.proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # once the projection is non-zero, the cross-entropy alone reaches the meta-network
        model.latent_to_memory.weight.normal_(std=0.1)
    model.zero_grad()
    model(**{k: v for k, v in batch.items() if k != "target_items"}).loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.meta_network.parameters())


def test_dmrec_t5_decoder_reads_the_latent_token(trained_dmrec, tokenizer, scientific):
    """Changing only the history's text embeddings moves the next-SID distribution."""
    batch = tokenizer.encode_histories(histories(scientific, 8), return_item_index=True)
    labels = tokenizer.encode_targets([scientific.splits["test"][i]["target"] for i in range(8)])
    with torch.no_grad():
        before = trained_dmrec(**batch, labels=labels).logits
        saved = trained_dmrec.item_text_embeddings.clone()
        trained_dmrec.item_text_embeddings.mul_(-1.0)
        after = trained_dmrec(**batch, labels=labels).logits
        trained_dmrec.item_text_embeddings.copy_(saved)
    assert (before - after).abs().max() > 1e-5  # exactly 0 if the decoder ignored the token


def test_dmrec_t5_recommend_matches_stock_generate_and_is_valid(trained_dmrec, tokenizer, scientific):
    hist = histories(scientific, 6)
    fast = trained_dmrec.recommend(hist, tokenizer, top_k=5, num_beams=10)
    stock = trained_dmrec.recommend_with_generate(hist, tokenizer, top_k=5, num_beams=10)
    assert torch.equal(fast.items, stock.items)
    torch.testing.assert_close(fast.scores, stock.scores, atol=1e-4, rtol=1e-4)
    for row in fast.items.tolist():
        assert len(set(row)) == 5 and all(0 <= item < tokenizer.num_items for item in row)


def test_dmrec_t5_saves_and_loads_through_auto_model(trained_dmrec, tokenizer, scientific, tmp_path):
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    trained_dmrec.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    hist = histories(scientific, 6)
    expected = trained_dmrec.recommend(hist, tokenizer, top_k=5)
    for auto in (AutoModel, AutoModelForSeq2SeqLM):
        loaded = auto.from_pretrained(tmp_path)
        assert type(loaded).__name__ == "DMRecT5ForConditionalGeneration"
        got = loaded.recommend(hist, AutoTokenizer.from_pretrained(tmp_path), top_k=5)
        assert torch.equal(got.items, expected.items) and torch.equal(got.scores, expected.scores)
    for name, tensor in trained_dmrec.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_dmrec_models_load_with_trust_remote_code_without_sidrec(
    trained_dmrec, tokenizer, scientific, item_sets, title_embeddings, tmp_path
):
    """Both DMRec models carry their code: they load and recommend where `import sidrec` fails."""
    trained_dmrec.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    hist = histories(scientific, 4)
    expected = trained_dmrec.recommend(hist, tokenizer, top_k=5).items.tolist()
    vae = mult_vae(scientific.num_items, title_embeddings).eval()
    vae.save_pretrained(tmp_path / "mult-vae")
    expected_vae = vae.recommend(item_sets[:3], top_k=5).items.tolist()
    script = f"""
import sys
sys.modules["sidrec"] = None  # make `import sidrec` fail
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(model).__name__ == "DMRecT5ForConditionalGeneration"
vae = AutoModel.from_pretrained({str(tmp_path / "mult-vae")!r}, trust_remote_code=True)
assert type(vae).__module__.startswith("transformers_modules"), type(vae).__module__
print(vae.recommend({item_sets[:3]!r}, top_k=5).items.tolist())
print(model.recommend({hist!r}, tokenizer, top_k=5).items.tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-2:] == [str(expected_vae), str(expected)]


def test_dmrec_t5_without_item_index_is_a_clear_error(trained_dmrec, tokenizer, scientific):
    batch = tokenizer.encode_histories(histories(scientific, 2))
    with pytest.raises(ValueError, match="return_item_index=True"):
        trained_dmrec(**batch, labels=tokenizer.encode_targets([0, 1]))


# ----- recipes end to end ---------------------------------------------------------------------------
def collaborative_overrides(out, strategy="mddm"):
    from .test_pipeline import TINY_DATA

    return [
        "name=tiny-mult-vae",
        "task=collaborative",
        f"output_dir={out}",
        *TINY_DATA,
        "mult_vae.hidden_size=64",
        "mult_vae.latent_size=16",
        "mult_vae.meta_hidden_size=32",
        "mult_vae.eval_every_epochs=1",
        f"training.objectives={{ce: 1.0, dmrec: {{strategy: {strategy}, beta: 0.6}}}}",
        "training.epochs=3",
        "training.batch_size=256",
        "training.learning_rate=0.003",
        "training.weight_decay=0.0",
        "training.warmup_ratio=0.0",
        "training.lr_scheduler_type=constant",
        "training.logging_steps=2",
    ]


def test_collaborative_recipe_reports_metrics_the_saved_model_reproduces(tmp_path):
    """task: collaborative trains Mult-VAE + MDDM with the Trainer; reloading the saved model and ranking
    the test users again from the same seeded split gives the numbers in metrics.json."""
    import json

    from transformers import AutoModel

    from sidrec.training.data import load_sequential_data, random_split
    from sidrec.training.metrics import ranking_metrics
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    from .test_pipeline import recipe_file

    recipe = load_recipe(recipe_file(tmp_path), collaborative_overrides(tmp_path / "run"))
    metrics = run(recipe)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["dmrec/strategy"] == "mddm" and 0 < saved["test/recall@20"] <= 1
    model = AutoModel.from_pretrained(tmp_path / "run" / "model")
    assert model.meta_network is not None
    data = load_sequential_data(recipe.data, verbose=False)
    test = random_split(data.sequences, (3, 1, 1), seed=recipe.seed)["test"]
    from sidrec.modeling.modeling_mult_vae import pad_item_sets

    ranked = model.recommend(test["items"], top_k=20).items
    again = ranking_metrics(ranked, pad_item_sets(test["held_out"]), (5, 10, 20))
    for key in ("recall@20", "ndcg@20", "recall@5"):
        assert again[key] == pytest.approx(metrics[f"test/{key}"])
    # test_ranks.json: each held-out item's rank, so a user's Recall@k is the share of its list below k
    saved_ranks = json.loads((tmp_path / "run" / "test_ranks.json").read_text())
    assert saved_ranks["users"] == test["user"]
    assert [len(r) for r in saved_ranks["ranks"]] == [len(h) for h in test["held_out"]]
    for k in (5, 10, 20):
        per_user = [sum(0 <= r < k for r in ranks) / len(ranks) for ranks in saved_ranks["ranks"]]
        assert sum(per_user) / len(per_user) == pytest.approx(metrics[f"test/recall@{k}"])
    from huggingface_hub import ModelCard  # the run's own card: Mult-VAE with MDDM, not an SID-T5 card

    card = ModelCard.load(tmp_path / "run" / "model" / "README.md")
    assert "mult-vae-mddm" in card.data.tags and "## Semantic IDs" not in card.text
    assert "Mult-VAE + MDDM (this model)" in card.text and "zhang2025dmrec" in card.text
    assert "liang2018multvae" in card.text and "Random 3:1:1 split" in card.text


def test_dmrec_t5_recipe_runs_end_to_end(tmp_path):
    import json

    from transformers import AutoModel

    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    from .test_pipeline import TINY, recipe_file

    overrides = TINY + [
        f"output_dir={tmp_path / 'run'}",
        "training.epochs=1",
        "dmrec.enabled=true",
        "dmrec.latent_size=8",
        "dmrec.meta_hidden_size=32",
        "training.objectives={ce: 1.0, dmrec: {strategy: mddm, beta: 0.5, weight: 0.25}}",
    ]
    run(load_recipe(recipe_file(tmp_path), overrides))
    logs = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "test/recall@10" in logs
    model = AutoModel.from_pretrained(tmp_path / "run" / "model")
    assert type(model).__name__ == "DMRecT5ForConditionalGeneration"
    assert "DMRec" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.objectives={ce: 1.0, dmrec: {strategy: mddm}}"], "dmrec: {enabled: true}"),
        (["dmrec.enabled=true"], "add `dmrec"),
        (["dmrec.enabled=true", "joint.enabled=true"], "cannot be combined"),
        (["task=collaborative", "training.objectives={ce: 1.0}"], "task: collaborative trains Mult-VAE"),
        (["task=graph"], "task must be one of"),
    ],
)
def test_conflicting_dmrec_settings_fail_before_any_work(tmp_path, overrides, message):
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import RecipeError, load_recipe

    from .test_pipeline import TINY, recipe_file

    with pytest.raises(RecipeError, match=message):
        run(load_recipe(recipe_file(tmp_path), TINY + [f"output_dir={tmp_path / 'run'}", *overrides]))
    assert not (tmp_path / "run").exists()
