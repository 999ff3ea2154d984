"""SASRec, the classical floor: loss and batching by hand, causality, save/load, remote code, a recipe run."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from sidrec import SASRecConfig, SASRecForSequentialRecommendation
from sidrec.training.data import NextItemCollator

from .test_pipeline import TINY, recipe_file


def toy_model(loss_type: str = "ce", num_items: int = 6) -> SASRecForSequentialRecommendation:
    torch.manual_seed(0)
    config = SASRecConfig(
        num_items=num_items, max_seq_length=4, hidden_size=8, num_heads=2, dropout=0.0, loss_type=loss_type
    )
    return SASRecForSequentialRecommendation(config).eval()


def test_collator_shifts_each_row_into_inputs_and_next_item_labels():
    batch = NextItemCollator(max_length=3)([{"history": [4, 1], "target": 2}, {"history": [0, 3, 5, 1], "target": 2}])
    # ids are index + 1, right-padded; the second history keeps its last 3 inputs (max_length)
    assert batch["input_ids"].tolist() == [[5, 2, 0], [4, 6, 2]]
    assert batch["labels"].tolist() == [[1, 2, -100], [5, 1, 2]]


def test_cross_entropy_is_the_full_softmax_over_items_at_supervised_positions():
    model = toy_model("ce")
    input_ids = torch.tensor([[5, 2, 0], [4, 6, 2]])
    labels = torch.tensor([[1, 2, -100], [5, 1, 2]])
    loss = model(input_ids=input_ids, labels=labels).loss
    hidden = model.encode(input_ids)
    table = model.item_embeddings.weight[1:]  # item i is row i + 1
    terms = []
    for row, position in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]:
        scores = table @ hidden[row, position]
        terms.append(-(scores[labels[row, position]] - torch.logsumexp(scores, dim=0)))
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_bce_scores_one_positive_and_one_given_negative_per_position():
    model = toy_model("bce")
    input_ids, labels = torch.tensor([[5, 2, 0]]), torch.tensor([[1, 2, -100]])
    negatives = torch.tensor([[3, 0, 0]])
    loss = model(input_ids=input_ids, labels=labels, negative_ids=negatives).loss
    hidden = model.encode(input_ids)[0]
    emb = model.item_embeddings.weight
    pos = [hidden[0] @ emb[1 + 1], hidden[1] @ emb[2 + 1]]
    neg = [hidden[0] @ emb[3 + 1], hidden[1] @ emb[0 + 1]]
    expected = sum(-math.log(torch.sigmoid(p).item()) for p in pos) / 2
    expected += sum(-math.log(1 - torch.sigmoid(n).item()) for n in neg) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_position_never_reads_later_items():
    model = toy_model()
    a = model.encode(torch.tensor([[5, 2, 3]]))
    b = model.encode(torch.tensor([[5, 2, 6]]))
    assert torch.allclose(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2], b[:, 2])


def test_recommend_ranks_the_whole_catalogue_from_the_last_real_position():
    model = toy_model()
    result = model.recommend([[4, 1], [0, 2, 4, 5, 3]], top_k=6)  # the second is longer than max_seq_length
    expected = model.item_scores(model.encode(torch.tensor([[5, 2]]))[0, -1])
    assert result.items[0].tolist() == expected.argsort(descending=True).tolist()
    assert sorted(result.items[1].tolist()) == list(range(6))  # every item once
    assert torch.equal(model.recommend([[2, 4, 5, 3]], top_k=6).items[0], result.items[1])  # the recent 4 kept
    unseen = model.recommend([[4, 1]], top_k=4, exclude_history=True).items[0].tolist()
    assert set(unseen) == set(range(6)) - {4, 1}
    # item 0 is older than the 4 items the model reads, and is still one the user has
    unseen = model.recommend([[0, 2, 4, 5, 3]], top_k=1, exclude_history=True).items[0].tolist()
    assert unseen == [1]
    with pytest.raises(ValueError, match="History 0 is empty"):  # the words every entry uses
        model.recommend([[]])


def test_sasrec_recipe_runs_saves_and_reproduces_its_metrics(sasrec_run, tmp_path):
    from sidrec.training.data import DataConfig, load_sequential_data
    from sidrec.training.ranking import SequenceRanker, evaluate_ranker
    from sidrec.training.recipe import load_recipe

    out, metrics = sasrec_run
    written = json.loads((out / "metrics.json").read_text())
    assert written["run/method"] == "sasrec" and written["test/users"] == 200
    assert 0 <= written["test/ndcg@10"] <= written["test/recall@10"] <= written["test/recall@20"] <= 1
    model = AutoModel.from_pretrained(out / "model")
    assert isinstance(model, SASRecForSequentialRecommendation)
    recipe = load_recipe(out / "recipe.yaml")
    data = load_sequential_data(DataConfig(**recipe.to_dict()["data"]), verbose=False)
    test = data.splits["test"].select(range(200))
    again = evaluate_ranker(SequenceRanker(model), test, (5, 10, 20))
    assert again == pytest.approx({k[len("test/") :]: v for k, v in written.items() if k[5:] in again})
    ranked = model.recommend(test["history"], top_k=20).items
    assert all(len(set(row)) == 20 and min(row) >= 0 and max(row) < data.num_items for row in ranked.tolist())
    # evaluation.exclude_history: each list is the full ranking with the user's own items taken out, and a test
    # target is never in its own history on this data, so recall can only rise
    excluded = SequenceRanker(model, exclude_history=True).rank(test.to_dict(), 20).items.tolist()
    full = model.recommend(test["history"], top_k=data.num_items).items.tolist()
    for row, ranking, history, target in zip(excluded, full, test["history"], test["target"]):
        assert row == [item for item in ranking if item not in set(history)][:20] and target not in history
    assert evaluate_ranker(SequenceRanker(model, exclude_history=True), test, (10,))["recall@10"] >= again["recall@10"]


def test_sasrec_loads_with_trust_remote_code_without_sidrec(sasrec_run):
    out, _ = sasrec_run
    model = AutoModel.from_pretrained(out / "model")
    expected = model.recommend([[0, 1, 2], [5]], top_k=5).items.tolist()
    script = f"""
import sys
sys.modules["sidrec"] = None  # make `import sidrec` fail
from transformers import AutoModel
model = AutoModel.from_pretrained({str(out / "model")!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
print(model.recommend([[0, 1, 2], [5]], top_k=5).items.tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=out, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(expected)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.objectives={ce: 1.0, soda: 0.1}"], "its own loss"),
        (["joint.enabled=true"], "cannot be combined"),
        (["sasrec.loss_type=hinge"], "loss_type"),
        (["sasrec.num_heads=3"], "divisible"),
    ],
)
def test_conflicting_sasrec_settings_fail_before_any_work(tmp_path, overrides, message):
    from sidrec.training.errors import RecipeError
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    recipe = load_recipe(
        recipe_file(tmp_path), [*TINY, "sasrec.enabled=true", f"output_dir={tmp_path / 'x'}", *overrides]
    )
    with pytest.raises(RecipeError, match=message):
        run(recipe)
    assert not (tmp_path / "x").exists()


def test_bce_and_ce_give_different_gradients_on_the_same_batch():
    """The two losses really differ (the BCE variant is not the CE one relabelled)."""
    ce, bce = toy_model("ce"), toy_model("bce")
    batch = dict(input_ids=torch.tensor([[5, 2, 0]]), labels=torch.tensor([[1, 2, -100]]))
    ce(**batch).loss.backward()
    bce(**batch, negative_ids=torch.tensor([[3, 0, 0]])).loss.backward()
    assert not torch.allclose(ce.item_embeddings.weight.grad, bce.item_embeddings.weight.grad)
    assert (
        F.cosine_similarity(ce.item_embeddings.weight.grad.flatten(), bce.item_embeddings.weight.grad.flatten(), 0) < 1
    )


def test_a_sasrec_run_writes_its_own_card_whose_snippet_runs(sasrec_run, capsys):
    from huggingface_hub import ModelCard

    out, metrics = sasrec_run
    card = ModelCard.load(out / "model" / "README.md")
    assert "sasrec" in card.data.tags and "semantic-ids" not in card.data.tags
    assert "SASRecForSequentialRecommendation" in card.text and "## Semantic IDs" not in card.text
    assert "kang2018sasrec" in card.text and "full-softmax cross-entropy" in card.text
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {k[len("test/") :]: v for k, v in metrics.items() if k[5:] in results} and "recall@10" in results
    snippet = card.text.split("## How to use")[1].split("```python\n")[1].split("```")[0]
    exec(compile(snippet, "card-snippet", "exec"), {})  # runs as written against the saved model
    printed = capsys.readouterr().out.strip()
    assert len(ast.literal_eval(printed)) == 10


def test_sasrec_protocols_reads_one_saved_run_both_ways_and_keeps_other_entries(sasrec_run, tmp_path, monkeypatch):
    """benchmarks/sasrec_protocols.py: the same saved model, history kept and excluded, added to a results file."""
    from .conftest import load_benchmark_script

    protocols = load_benchmark_script("sasrec_protocols")
    out, _ = sasrec_run
    output = tmp_path / "protocols.json"
    output.write_text(json.dumps({"earlier/run": {"kept": {}, "excluded": {}}}))
    monkeypatch.setattr(sys, "argv", ["sasrec_protocols.py", str(out), "--output", str(output)])
    protocols.main()
    results = json.loads(output.read_text())
    key = "/".join(out.parts[-4:])
    assert set(results) == {"earlier/run", key}  # an earlier entry is never lost
    kept, excluded = results[key]["kept"], results[key]["excluded"]
    assert set(kept) == set(excluded) and {"recall@10", "ndcg@10"} <= set(kept)
    # A test target is never in its own history on this data: excluding history can only lift it, and does.
    assert all(excluded[name] >= kept[name] for name in kept) and any(excluded[name] > kept[name] for name in kept)
