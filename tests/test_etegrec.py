"""ETEGRec's alignment losses: by hand (the sign inside the softmax included), on real joint batches, in a run."""

from __future__ import annotations

import math

import pytest
import torch

from sidrec import SemanticIDTokenizer
from sidrec.tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from sidrec.tokenization.modeling_quantizer import SemanticIDQuantizer
from sidrec.training.errors import RecipeError
from sidrec.training.methods import build_objectives, method_name
from sidrec.training.methods.diger import JointSIDT5
from sidrec.training.methods.diger.uncertainty_decay import build_uncertainty_decay
from sidrec.training.methods.etegrec import (
    distinct_rows,
    residual_distances,
    symmetric_code_kl,
    symmetric_info_nce,
)
from sidrec.training.recipe import check_recipe, load_recipe

from .conftest import tiny_config
from .test_diger_modes import end_to_end_model
from .test_joint import train_batch
from .test_letter import run_reload_and_recommend
from .test_pipeline import TINY, recipe_file


# ----- the losses, by hand ---------------------------------------------------------------------------
def test_symmetric_code_kl_by_hand_with_the_papers_sign():
    # p = softmax(-[0, ln2, ln2]) = [1/2, 1/4, 1/4]; q = softmax(-[ln2, 0, ln2]) = [1/4, 1/2, 1/4]
    # KL(p||q) = 1/2 ln2 - 1/4 ln2 = 1/4 ln2, KL(q||p) the same: the sum is 1/2 ln2.
    ln2 = math.log(2.0)
    first = torch.tensor([[[0.0, ln2, ln2]]])
    second = torch.tensor([[[ln2, 0.0, ln2]]])
    assert symmetric_code_kl(first, second).item() == pytest.approx(0.5 * ln2)
    # ETEGRec's released softmax(+d) gives p' = [1, 2, 2] / 5, q' = [2, 1, 2] / 5 and 2/5 ln2 instead.
    assert symmetric_code_kl(-first, -second).item() == pytest.approx(0.4 * ln2)
    assert symmetric_code_kl(first, first).item() == pytest.approx(0.0, abs=1e-7)


def test_symmetric_info_nce_by_hand():
    # Orthonormal rows: similarity = I / t, so each row's CE is log(1 + e^{-1/t}); two directions add.
    pairs = torch.eye(2)
    expected = 2 * math.log(1 + math.exp(-1 / 0.5))
    assert symmetric_info_nce(pairs, pairs, temperature=0.5).item() == pytest.approx(expected)
    assert symmetric_info_nce(3.0 * pairs, pairs, temperature=0.5).item() == pytest.approx(expected)  # cosine
    swapped = pairs[[1, 0]]  # every positive is now the farthest row: the loss grows
    assert symmetric_info_nce(swapped, pairs, temperature=0.5).item() > expected


def test_residual_distances_by_hand():
    config = SemanticIDQuantizerConfig(input_dim=4, hidden_dims=[4], latent_dim=2, num_levels=2, codebook_size=2)
    quantizer = SemanticIDQuantizer(config)
    with torch.no_grad():
        quantizer.codebooks.copy_(torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]]))
    latent = torch.tensor([[1.9, 0.8]])
    # level 0: |(1.9, 0.8)|^2 = 4.25, |(-0.1, 0.8)|^2 = 0.65 -> nearest code 1, residual (-0.1, 0.8)
    # level 1: |(-0.1, -0.2)|^2 = 0.05, |(-0.1, 1.8)|^2 = 3.25
    nearest = residual_distances(quantizer, latent)
    torch.testing.assert_close(nearest, torch.tensor([[[4.25, 0.65], [0.05, 3.25]]]))
    # An item's own codes (0 at level 0) set its residual instead: (1.9, 0.8) -> 3.65 and 6.85.
    own = residual_distances(quantizer, latent, codes=torch.tensor([[0, 0]]))
    torch.testing.assert_close(own[:, 1], torch.tensor([[3.65, 6.85]]))


def test_distinct_rows_are_first_occurrences():
    assert distinct_rows(torch.tensor([5, 3, 5, 7, 3])).tolist() == [1, 0, 3]


# ----- the joint step on real batches ----------------------------------------------------------------------
def aligned_model(fitted, embeddings, **options):
    """ETEGRec's joint model: the reference mode with the projections and the alternating cycle, no noise."""
    options = {"mode": "reference", "alignment": True, "alternate": True, **options}
    return end_to_end_model(fitted, embeddings, "none", **options)


def alignment_loss(model, batch):
    objectives = build_objectives({"sia": 1.0, "psa": 1.0})
    outputs = model(**batch)
    losses = [objective(model, batch, outputs)[0] for objective in objectives.values()]
    return outputs, sum(losses)


def test_alignment_trains_the_tokenizer_in_its_epoch_and_the_recommender_in_its_own(
    fitted, title_embeddings, scientific
):
    model, tokenizer = aligned_model(fitted, title_embeddings, tokenizer_warmup_epochs=1)
    batch = train_batch(tokenizer, scientific)
    model.set_epoch(0)  # the warm-up: the recommender alone, no alignment yet
    assert model.phase == "recommender" and model.warming_up
    outputs, loss = alignment_loss(model, batch)
    assert outputs.alignment is None and loss.item() == 0.0
    model.set_epoch(1)  # tokenizer epoch: the alignment reaches the codebooks, encoder and decoder of the RQ-VAE
    assert model.phase == "tokenizer"
    outputs, loss = alignment_loss(model, batch)
    assert len(outputs.alignment.preference) == len(torch.unique(batch["target_items"]))
    loss.backward()
    assert model.quantizer.codebooks.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.quantizer.decoder.parameters())
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("quantizer."))
    model.zero_grad(set_to_none=True)
    model.set_epoch(2)  # recommender epoch: the projections and the T5 learn, the tokenizer is fixed
    assert model.phase == "recommender"
    _, loss = alignment_loss(model, batch)
    loss.backward()
    assert all(p.grad is None for p in model.quantizer.parameters())
    assert model.sequence_adapter.weight.grad.abs().sum() > 0
    assert model.preference_adapter.weight.grad.abs().sum() > 0
    assert model.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0


def test_soda_over_etegrec_reaches_the_codebooks_in_tokenizer_epochs_and_the_t5_in_recommender_epochs(
    fitted, title_embeddings, scientific
):
    """SODA beside ETEGRec's alternation (configs/scientific-etegrec-soda-demo.yaml): each phase trains its side."""
    model, tokenizer = aligned_model(fitted, title_embeddings, tokenizer_warmup_epochs=0)
    batch = train_batch(tokenizer, scientific)
    soda = build_objectives({"soda": 1.0})["soda"]
    model.set_epoch(0)
    assert model.phase == "tokenizer"
    loss, _ = soda(model, batch, model(**batch))
    assert loss.item() > 0
    loss.backward()
    assert model.quantizer.codebooks.grad.abs().sum() > 0  # the items' soft code distributions
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("quantizer."))
    model.zero_grad(set_to_none=True)
    model.set_epoch(1)
    assert model.phase == "recommender"
    loss, _ = soda(model, batch, model(**batch))
    loss.backward()
    assert all(p.grad is None for p in model.quantizer.parameters())
    assert model.decoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0  # the users' distributions


def test_the_exported_recommender_drops_the_projections_and_ranks_the_same(fitted, title_embeddings, scientific):
    model, tokenizer = aligned_model(fitted, title_embeddings)
    plain = model.to_recommender().eval()
    assert not any("adapter" in key for key in plain.state_dict())
    histories = [row["history"] for row in scientific.splits["test"].select(range(8))]
    assert torch.equal(
        model.eval().recommend(histories, tokenizer, top_k=5, num_beams=5).items,
        plain.recommend(histories, tokenizer, top_k=5, num_beams=5).items,
    )


def test_alignment_needs_the_reference_mode(fitted, title_embeddings):
    tokenizer = SemanticIDTokenizer(item_codes=fitted.codes.clone(), quantizer=fitted.quantizer, num_levels=4)
    with pytest.raises(ValueError, match="mode='reference'"):
        JointSIDT5.from_recommender_config(
            tiny_config(tokenizer),
            fitted.quantizer,
            title_embeddings,
            tokenizer.item_codes,
            build_uncertainty_decay("none", 3, 32),
            alignment=True,
        )


# ----- the recipe -----------------------------------------------------------------------------------------
ETEGREC = [
    "joint.enabled=true",
    "joint.mode=reference",
    "joint.alignment=true",
    "joint.alternate=true",
    "joint.uncertainty_decay=none",
    "joint.logits=calibrated",  # ETEGRec's RQ-VAE: nearest codes, no Sinkhorn, the whole encoder trains
    "joint.sinkhorn_epsilon=0",
    "joint.frozen_encoder=none",
    "training.objectives={ce: 1.0, quantizer: 1.0, sia: 0.0001, psa: 0.0003}",
]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.objectives={ce: 1.0, sia: 0.0001}"], "set `joint: {enabled: true, mode: reference, alignment"),
        ([*ETEGREC, "joint.mode=end_to_end"], "set joint.mode: reference"),
    ],
)
def test_bad_alignment_settings_fail_before_any_work(tmp_path, overrides, message):
    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"output_dir={tmp_path / 'x'}", *overrides])
    with pytest.raises(RecipeError, match=message):
        check_recipe(recipe)


@pytest.mark.slow
@pytest.mark.parametrize(
    "objectives, name",
    [
        ([], "etegrec"),
        (["training.objectives={ce: 1.0, quantizer: 1.0, sia: 1.0, psa: 1.0, soda: 1.0}"], "etegrec+soda"),
    ],
)
def test_etegrec_over_collaborative_sids_trains_saves_loads_and_recommends(sasrec_run, tmp_path, objectives, name):
    overrides = ["embeddings.source=collaborative", *ETEGREC, *objectives]
    recipe = load_recipe(recipe_file(tmp_path), [*TINY, f"embeddings.collaborative_run={sasrec_run[0]}", *overrides])
    assert method_name(recipe) == name
    metrics, tokenizer = run_reload_and_recommend(tmp_path, sasrec_run[0], name, overrides)
    assert metrics["run/method"] == name
    assert tokenizer.quantizer.config.input_dim == 32  # the SASRec item table alone
