"""DIGER's two modes: the reference (released code) step, balanced codes, churn, tokenizer warm-up.

Hand-worked cases for the assignment maths; real Scientific batches for the gradient paths.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sidrec import SemanticIDTokenizer
from sidrec.modeling.configuration_sid_t5 import NUM_SPECIAL_TOKENS
from sidrec.tokenization.balanced_assignment import balanced_codes, centre_distances, sinkhorn_plan
from sidrec.tokenization.semantic_codes import code_churn, code_statistics
from sidrec.training.errors import RecipeError
from sidrec.training.methods import method_name
from sidrec.training.methods.diger import JointSIDT5
from sidrec.training.methods.diger.uncertainty_decay import build_uncertainty_decay
from sidrec.training.recipe import check_method_settings, load_recipe

from .conftest import ROOT, tiny_config
from .test_joint import train_batch


# ----- the assignment maths, by hand --------------------------------------------------------------------
def test_centred_distances_by_hand():
    distances = torch.tensor([[1.0, 3.0], [2.0, 5.0]])  # min 1, max 5: middle 3, half-range 2
    expected = torch.tensor([[-1.0, 0.0], [-0.5, 1.0]])
    torch.testing.assert_close(centre_distances(distances, eps=0.0), expected)
    assert centre_distances(torch.full((2, 3), 7.0)).abs().max() == 0  # all equal: no division by zero


def test_sinkhorn_balances_two_items_that_share_a_nearest_code():
    # Both items are nearest to code 0; the cheaper balanced assignment gives code 0 to item 0
    # (cost 0 + 0.5 for item 1 on code 1, against 1 + 0 the other way round).
    distances = torch.tensor([[0.0, 1.0], [0.0, 0.5]])
    assert distances.argmin(dim=1).tolist() == [0, 0]
    assert balanced_codes(distances).tolist() == [0, 1]
    plan = sinkhorn_plan(centre_distances(distances))
    torch.testing.assert_close(plan.sum(dim=1), torch.ones(2))  # each item: one unit of assignment
    torch.testing.assert_close(plan.sum(dim=0), torch.ones(2), atol=0.02, rtol=0)  # each code: B / K items


def test_sinkhorn_uses_every_code_about_equally_on_random_costs():
    generator = torch.Generator().manual_seed(0)
    distances = torch.rand(1024, 32, generator=generator)
    counts = torch.bincount(balanced_codes(distances), minlength=32)
    nearest = torch.bincount(distances.argmin(dim=1), minlength=32)
    assert counts.max() - counts.min() < nearest.max() - nearest.min()
    assert counts.max() <= 1.25 * 1024 / 32


def test_sinkhorn_rejects_a_non_positive_epsilon():
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        sinkhorn_plan(torch.zeros(2, 2), epsilon=0.0)


def balanced_quantizer(fitted, logit_mode: str = "centred", epsilon: float = 0.003):
    quantizer = copy.deepcopy(fitted.quantizer).eval()
    quantizer.config.logit_mode = logit_mode
    quantizer.config.sinkhorn_epsilon = epsilon
    return quantizer


def test_centred_logits_are_minus_the_centred_distances(fitted, title_embeddings):
    quantizer = balanced_quantizer(fitted, epsilon=0.0)
    latent = quantizer.encoder(title_embeddings[:64])
    output = quantizer.assign(latent)
    distances = quantizer.distances(latent, 0)
    low, high = distances.min(), distances.max()
    by_hand = -(distances - (low + high) / 2) / ((high - low) / 2 + 1e-5)
    torch.testing.assert_close(output.logits[:, 0], by_hand)
    assert output.logits.min() >= -1 - 1e-6 and output.logits.max() <= 1 + 1e-6


def test_sinkhorn_codes_spread_the_catalogue_and_noise_free_gumbel_keeps_them(fitted, title_embeddings):
    nearest = fitted.quantizer.encode_codes(title_embeddings)
    quantizer = balanced_quantizer(fitted)
    balanced = quantizer.encode_codes(title_embeddings)
    spread, before = code_statistics(balanced, 32), code_statistics(nearest, 32)
    for level in range(3):  # 50 iterations balance most codes; a few far-away codes stay under-used
        assert spread[f"level{level}/perplexity"] > before[f"level{level}/perplexity"]
        assert spread[f"level{level}/usage"] >= before[f"level{level}/usage"]
    # Balancing each level on its own does not lower collisions: on this fixture they rise (42% -> 56%).
    latent = quantizer.encoder(title_embeddings[:256])
    quiet = quantizer.assign(latent, mode="gumbel", noise_scale=0.0)
    assert torch.equal(quiet.codes, quiet.deterministic_codes)
    assert torch.equal(quiet.codes, quantizer.assign(latent).codes)
    hot = torch.zeros(256, 1)
    hot[:8] = 1.0  # only the first 8 samples are noisy: the others keep their balanced codes
    mixed = quantizer.assign(latent, mode="gumbel", noise_scale=hot, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed.codes[8:, 0], quiet.codes[8:, 0])


def test_hysteresis_keeps_a_code_unless_the_new_one_is_better_by_the_margin():
    from sidrec.tokenization.configuration_quantizer import SemanticIDQuantizerConfig
    from sidrec.tokenization.modeling_quantizer import SemanticIDQuantizer

    quantizer = SemanticIDQuantizer(
        SemanticIDQuantizerConfig(input_dim=2, hidden_dims=[], latent_dim=2, num_levels=1, codebook_size=2)
    )
    with torch.no_grad():
        quantizer.codebooks[0] = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    latent = torch.tensor([[0.4, 0.0]])  # squared distances 0.16 and 0.36: code 0 is better by 0.2 logits
    held = torch.tensor([[1]])
    assert quantizer.assign(latent).codes.tolist() == [[0]]
    assert quantizer.assign(latent, previous_codes=held, hysteresis=0.1).codes.tolist() == [[0]]
    assert quantizer.assign(latent, previous_codes=held, hysteresis=0.3).codes.tolist() == [[1]]


# ----- churn ----------------------------------------------------------------------------------------
def test_code_churn_by_hand():
    before = torch.tensor([[0, 1, 2], [0, 1, 3], [4, 5, 6], [7, 7, 7]])
    after = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 0], [1, 7, 0]])
    # level 0: item 3 changed (1/4); level 1: item 1 (1/4); level 2: items 2 and 3 (2/4); any: items 1, 2, 3.
    assert code_churn(before, after) == {"level0": 0.25, "level1": 0.25, "level2": 0.5, "any": 0.75}
    with pytest.raises(ValueError, match="differ in shape"):
        code_churn(before, after[:, :2])


# ----- the reference mode on real batches ------------------------------------------------------------
def reference_model(fitted, embeddings, strategy: str, frozen_encoder: str, warmup: int = 0):
    quantizer = balanced_quantizer(fitted).train()
    tokenizer = SemanticIDTokenizer(
        item_codes=fitted.codes.clone(), quantizer=quantizer, num_levels=4, codebook_size=32
    )
    torch.manual_seed(0)
    model = JointSIDT5.from_recommender_config(
        tiny_config(tokenizer),
        quantizer,
        embeddings,
        tokenizer.item_codes,
        build_uncertainty_decay(strategy, 3, 32),
        mode="reference",
        frozen_encoder=frozen_encoder,
        tokenizer_warmup_epochs=warmup,
    )
    return model.train(), tokenizer


def test_reference_frqud_cross_entropy_gives_the_tokenizer_no_gradient(fitted, title_embeddings, scientific):
    model, tokenizer = reference_model(fitted, title_embeddings, "frqud", "all")
    batch = train_batch(tokenizer, scientific)
    output = model(**batch)
    output.loss.backward()
    assert all(param.grad is None for param in model.quantizer.parameters())
    assert model.shared.weight.grad.abs().sum() > 0
    # The recommender step is plain SID-T5 on the table's codes.
    plain = model.to_recommender().train()
    torch.manual_seed(1)
    expected = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    torch.manual_seed(1)
    again = model(**batch)
    torch.testing.assert_close(again.recommendation_loss, expected.loss)
    # The quantizer's own loss trains the codebooks only: the encoder is frozen.
    model.zero_grad()
    model(**batch).quantizer_loss.backward()
    assert model.quantizer.codebooks.grad.abs().sum() > 0
    assert all(param.grad is None for param in model.quantizer.encoder.parameters())


def test_reference_sdud_cross_entropy_reaches_only_sigma(fitted, title_embeddings, scientific):
    model, tokenizer = reference_model(fitted, title_embeddings, "sdud", "all_but_last")
    output = model(**train_batch(tokenizer, scientific))
    output.loss.backward()
    assert model.uncertainty_decay.sigma.grad.abs().sum() > 0
    assert all(param.grad is None for param in model.quantizer.parameters())
    layers = [module for module in model.quantizer.encoder if isinstance(module, torch.nn.Linear)]
    assert all(not p.requires_grad for layer in layers[:-1] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[-1].parameters())


def test_frqud_hot_test_on_balanced_codes_marks_fewer_samples_hot(fitted, title_embeddings, scientific):
    """FrqUD's usage EMA fed with Sinkhorn codes stays near uniform, so fewer samples are hot."""
    fractions = {}
    for epsilon in (0.0, 0.003):
        model, tokenizer = reference_model(fitted, title_embeddings, "frqud", "all")
        model.quantizer.config.sinkhorn_epsilon = epsilon
        model.uncertainty_decay.momentum = 0.5  # a short run reaches the EMA's steady state
        with torch.no_grad():
            for step in range(8):
                model(**train_batch(tokenizer, scientific, size=128, start=128 * step))
        fractions[epsilon] = model.uncertainty_decay.figures()["frqud/hot_fraction"]
    assert fractions[0.003] < fractions[0.0]


def test_tokenizer_warmup_freezes_then_restores_exactly_the_trainable_set(fitted, title_embeddings):
    model, _ = reference_model(fitted, title_embeddings, "frqud", "all_but_last", warmup=1)
    trainable = {name for name, param in model.quantizer.named_parameters() if param.requires_grad}
    assert "codebooks" in trainable and not any(name.startswith("encoder.0.") for name in trainable)
    model.set_epoch(0)
    assert not any(param.requires_grad for param in model.quantizer.parameters())
    model.set_epoch(1)
    assert {name for name, param in model.quantizer.named_parameters() if param.requires_grad} == trainable


def swap_last_level_codes(quantizer, first: int = 0, second: int = 1) -> None:
    """Swap two codebook vectors of the last level: their items trade codes, no group grows.

    A deterministic move of the codes (random noise on a codebook can merge groups past the collision
    level's 32 codes on one CPU and not on another).
    """
    with torch.no_grad():
        book = quantizer.codebooks[-1]
        book[[first, second]] = book[[second, first]].clone()


def test_reassignment_reports_churn_since_last_table_and_since_start(fitted, title_embeddings):
    model, _ = reference_model(fitted, title_embeddings, "frqud", "all")
    model.quantizer.config.sinkhorn_epsilon = 0.0  # 32 balanced codes put > 32 items on one ID in this tiny fixture
    first = model.reassign_item_codes()
    assert first["churn/level0"] == pytest.approx(code_churn(fitted.codes[:, :1], model.item_codes[:, :1])["level0"])
    model.mark_start_codes()
    start = model.item_codes.clone()
    swap_last_level_codes(model.quantizer)
    moved = model.reassign_item_codes()
    by_hand = code_churn(start[:, :3], model.item_codes[:, :3])
    assert moved["churn/level0"] == 0.0 and moved["churn/level1"] == 0.0  # only the last level's codebook moved
    assert moved["churn/level2"] == pytest.approx(by_hand["level2"]) and by_hand["level2"] > 0
    swapped = torch.isin(start[:, 2], torch.tensor([0, 1])).float().mean().item()
    assert by_hand["level2"] == pytest.approx(swapped)  # exactly the items of the two swapped codes moved
    assert moved["churn_from_start/level2"] == pytest.approx(by_hand["level2"])
    assert model.code_churn()["churn/any"] == pytest.approx(by_hand["any"])
    assert "initial_item_codes" not in model.to_recommender().state_dict()


def end_to_end_model(fitted, embeddings, strategy: str = "frqud", **options):
    """A joint model over a copy of the fitted quantizer (the session fixture must not change), in train mode."""
    tokenizer = SemanticIDTokenizer(
        item_codes=fitted.codes.clone(), quantizer=copy.deepcopy(fitted.quantizer), num_levels=4, codebook_size=32
    )
    torch.manual_seed(0)
    model = JointSIDT5.from_recommender_config(
        tiny_config(tokenizer),
        tokenizer.quantizer,
        embeddings,
        tokenizer.item_codes,
        build_uncertainty_decay(strategy, 3, 32),
        **options,
    )
    return model.train(), tokenizer


def test_alternating_phases_train_one_side_at_a_time(fitted, title_embeddings, scientific):
    model, tokenizer = end_to_end_model(fitted, title_embeddings, alternate=True, freeze_codes_epoch=2)
    batch = train_batch(tokenizer, scientific)
    model.set_epoch(0)  # tokenizer epoch: the loss reaches the codebooks through the codes, the recommender is frozen
    assert model.phase == "tokenizer" and not model.codes_fixed
    model(**batch).loss.backward()
    assert model.quantizer.codebooks.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("quantizer."))
    model.zero_grad(set_to_none=True)
    model.set_epoch(1)  # recommender epoch on the fixed table
    assert model.phase == "recommender" and model.codes_fixed
    output = model(**batch)
    (output.loss + output.quantizer_loss).backward()
    assert all(p.grad is None for p in model.quantizer.parameters())
    assert model.shared.weight.grad.abs().sum() > 0
    model.set_epoch(2)
    assert model.phase == "frozen_codes" and model.codes_fixed
    model.set_epoch(3)
    assert model.phase == "frozen_codes"  # the final phase lasts to the end


def test_phases_freeze_sigma_with_the_tokenizer_and_the_code_projection_with_the_recommender(fitted, title_embeddings):
    """Parameters attached after the quantizer (SDUD's sigma, the codebook projection) follow their side."""
    options = {"alternate": True, "tokenizer_warmup_epochs": 1, "code_embeddings": "codebook"}
    model, _ = end_to_end_model(fitted, title_embeddings, "sdud", **options)
    sigma, projection = model.uncertainty_decay.sigma, model.code_projection[0].weight
    assert "uncertainty_decay.sigma" in model.tokenizer_trainable
    assert "code_projection.0.weight" in model.recommender_trainable
    model.set_epoch(0)  # the warm-up: the recommender alone (ETEGRec), sigma frozen with the quantizer
    assert model.phase == "recommender" and not sigma.requires_grad and projection.requires_grad
    model.set_epoch(1)  # the first tokenizer epoch after the warm-up: the projection frozen with the recommender
    assert model.phase == "tokenizer" and sigma.requires_grad and not projection.requires_grad
    assert not model.shared.weight.requires_grad and model.quantizer.codebooks.requires_grad
    model.set_epoch(2)  # a recommender epoch: sigma frozen again
    assert model.phase == "recommender" and not sigma.requires_grad and projection.requires_grad


def test_no_reassignment_in_a_phase_on_fixed_codes(fitted, title_embeddings):
    from types import SimpleNamespace

    from sidrec.training.methods.diger import LivingCodesCallback

    model, tokenizer = end_to_end_model(fitted, title_embeddings, freeze_codes_epoch=1)
    callback = LivingCodesCallback(tokenizer)
    state = SimpleNamespace(epoch=1.0, global_step=10, log_history=[])
    swap_last_level_codes(model.quantizer)  # moves codes
    before = model.item_codes.clone()
    model.set_epoch(1)
    callback.on_epoch_end(None, state, None, model=model)
    assert torch.equal(model.item_codes, before) and state.log_history == []
    model.set_epoch(0)
    callback.on_epoch_end(None, state, None, model=model)
    assert not torch.equal(model.item_codes, before) and state.log_history[-1]["codes/churn/any"] > 0


# ----- the recipe ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, method, resolved",
    [
        ("scientific-diger-reference-frqud-demo", "diger-reference-frqud", ("centred", 0.003, "all")),
        ("scientific-diger-reference-sdud-demo", "diger-reference-sdud", ("centred", 0.003, "all_but_last")),
        ("scientific-diger-frqud-demo", "diger-end-to-end-frqud", ("calibrated", 0.0, "none")),
    ],
)
def test_recipes_name_the_mode_and_resolve_its_defaults(name, method, resolved):
    recipe = load_recipe(ROOT / "configs" / f"{name}.yaml")
    check_method_settings(recipe)
    assert method_name(recipe) == method
    settings = recipe.joint.resolved()
    assert (settings["logits"], settings["sinkhorn_epsilon"], settings["frozen_encoder"]) == resolved


@pytest.mark.parametrize(
    "override, message",
    [
        ("joint.mode=refrence", "joint.mode='refrence' is not one of"),
        ("joint.logits=centered", "joint.logits='centered' is not one of"),
        ("joint.frozen_encoder=most", "joint.frozen_encoder='most'"),
        ("joint.sinkhorn_epsilon=-1", "sinkhorn_epsilon must be >= 0"),
        ("joint.trainable=false", "drop joint.trainable: false"),
        ("joint.code_embeddings=codebooks", "joint.code_embeddings='codebooks' is not one of"),
        ("joint.code_hysteresis=-0.5", "code_hysteresis must be >= 0"),
        (
            "joint.frozen_code_levels=[2, 3]",
            r"frozen code levels \[3\] are not levels of this quantizer: use levels 0 to",
        ),
    ],
)
def test_bad_joint_settings_fail_before_any_work(override, message):
    recipe = load_recipe(ROOT / "configs" / "scientific-diger-reference-frqud-demo.yaml", [override])
    with pytest.raises(RecipeError, match=message):
        check_method_settings(recipe)


def test_codebook_derived_embeddings_equal_w_e_plus_b_and_follow_the_codebook(fitted, title_embeddings, scientific):
    model, tokenizer = end_to_end_model(fitted, title_embeddings, code_embeddings="codebook")
    with torch.no_grad():
        for layer in model.code_projection:
            layer.weight.normal_(std=0.1)
            layer.bias.normal_(std=0.1)
    level, code = 1, 5
    row = NUM_SPECIAL_TOKENS + level * 32 + code  # the special tokens, then 32 codes per level
    by_hand = model.code_projection[level](model.quantizer.codebooks[level, code]) + model.shared.weight[row]
    torch.testing.assert_close(model.code_token_embeddings()[level, code], by_hand)
    torch.testing.assert_close(model.shared(torch.tensor([row])), by_hand[None])  # the embedding layer sees it
    with torch.no_grad():
        model.quantizer.codebooks[level, code] += 1.0
    moved = model.code_projection[level](model.quantizer.codebooks[level, code]) + model.shared.weight[row]
    torch.testing.assert_close(model.code_token_embeddings()[level, code], moved)  # follows the codebook
    # The output layer is tied to the derived table; the exported plain SID-T5 carries it and ranks the same.
    model.eval()
    batch = train_batch(tokenizer, scientific, size=8)
    joint = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    plain = model.to_recommender().eval()
    exported = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    torch.testing.assert_close(joint.logits, exported.logits, rtol=1e-5, atol=1e-5)
    histories = [row["history"] for row in scientific.splits["test"].select(range(8))]
    assert torch.equal(
        model.recommend(histories, tokenizer, top_k=5, num_beams=5).items,
        plain.recommend(histories, tokenizer, top_k=5, num_beams=5).items,
    )
    # The recommendation loss trains W but does not move the codebooks through this path.
    model.train().zero_grad()
    model.quantizer.requires_grad_(True)
    output = model(**batch)
    output.loss.backward()
    assert model.code_projection[0].weight.grad.abs().sum() > 0


# ----- frozen code levels (scale-aware tokenizer updates) ----------------------------------------------
def test_frozen_levels_get_no_gradient_while_training_and_theirs_again_after(fitted, title_embeddings, scientific):
    from types import SimpleNamespace

    from sidrec.training.methods.diger import FrozenCodeLevelsCallback

    model, tokenizer = end_to_end_model(fitted, title_embeddings)
    batch = train_batch(tokenizer, scientific)
    callback = FrozenCodeLevelsCallback((2, 1))
    callback.on_train_begin(None, SimpleNamespace(), None, model=model)
    output = model(**batch)
    (output.loss + output.quantizer_loss).backward()
    grad = model.quantizer.codebooks.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0  # zero before clipping: no share of the norm
    callback.on_train_end(None, SimpleNamespace(), None, model=model)
    model.zero_grad(set_to_none=True)
    output = model(**batch)
    (output.loss + output.quantizer_loss).backward()
    assert model.quantizer.codebooks.grad[1:].abs().sum() > 0  # the hook is gone with the training


def test_frozen_levels_of_an_untrained_quantizer_are_refused():
    recipe = load_recipe(
        ROOT / "configs" / "scientific-diger-frqud-demo.yaml",
        ["joint.frozen_code_levels=[2]", "joint.trainable=false"],
    )
    with pytest.raises(RecipeError, match="joint.trainable: false already fixes all of them: drop one of the two"):
        check_method_settings(recipe)


@pytest.mark.slow
def test_frozen_levels_stay_exact_through_training_with_weight_decay(fitted, title_embeddings, scientific, tmp_path):
    from sidrec.training.methods.diger import FrozenCodeLevelsCallback

    from .test_joint import joint_trainer

    trainer = joint_trainer(fitted, title_embeddings, scientific, tmp_path, "frqud", epochs=1)
    trainer.args.weight_decay = 0.1  # AdamW shrinks every parameter it holds, gradient or not
    trainer.learning_rates = {"quantizer.": 1e-3}  # 100x the recipe: every trained codebook row moves
    trainer.add_callback(FrozenCodeLevelsCallback((1, 2)))
    start = trainer.model.quantizer.codebooks.detach().clone()
    trainer.train()
    after = trainer.model.quantizer.codebooks.detach()
    assert torch.equal(after[1:], start[1:])
    assert not torch.equal(after[0], start[0])  # the level left trainable did train
