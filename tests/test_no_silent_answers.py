"""No silent wrong answers: what each public entry once answered without a word, now refused or kept right.

Each test names the wrong answer it guards against (issue 35). The one-line refusals live in the table of
tests/test_bad_inputs.py; here are the cases that need more than one call: round trips, properties, data.
"""

from __future__ import annotations

import gzip
import json
import re

import evaluate
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import GenerationConfig

import sidrec.metrics
from sidrec import SemanticIDTokenizer
from sidrec.modeling.input_checks import check_histories, check_ranked_list
from sidrec.training.data import DataConfig, DataFormatError, load_sequential_data
from sidrec.training.errors import RecipeError
from sidrec.training.metrics import ranking_metrics
from sidrec.training.recipe import load_recipe
from sidrec.training.stages.models import check_codebook_fits, check_item_texts

from .conftest import ROOT, SCIENTIFIC

DEMO = ROOT / "configs" / "scientific-tiger-demo.yaml"


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(sidrec.metrics.SID_RANKING)


def test_the_metric_refuses_a_ranking_that_repeats_an_item(metric):
    """[[1, 1, 1]] against 1 gave recall@3 = 3.0 and ndcg@3 = 2.13."""
    with pytest.raises(ValueError, match="appear more than once"):
        metric.compute(predictions=[[1, 1, 1]], references=[1], ks=[3])
    assert metric.compute(predictions=[[1, 2, 3]], references=[1], ks=[3])["recall@3"] == 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True), st.integers(0, 30)),
        min_size=1,
        max_size=12,
    )
)
def test_metric_values_lie_in_zero_one_for_any_rankings(metric, data):
    predictions = [ranked for ranked, _ in data]
    references = [reference for _, reference in data]
    width = max(map(len, predictions))
    values = metric.compute(predictions=predictions, references=references, ks=[1, width], num_items=31)
    assert all(0.0 <= value <= 1.0 for value in values.values()), values


def test_float_and_bool_ids_are_refused_not_truncated(tiny_model, tokenizer):
    """[[10.0, 42.0, 7.5]] answered as [[10, 42, 7]]; [[True, False]] as items 1 and 0."""
    for history in ([10.0, 42.0, 7.5], [True, False]):
        with pytest.raises(ValueError, match="not an integer index"):
            tiny_model.recommend([history], tokenizer, top_k=3)
    numpy = pytest.importorskip("numpy")
    as_numpy = tiny_model.recommend([numpy.array([10, 42, 7])], tokenizer, top_k=3)  # NumPy integers are ids
    assert torch.equal(as_numpy.items, tiny_model.recommend([[10, 42, 7]], tokenizer, top_k=3).items)
    assert check_histories(torch.tensor([[1, 2]])) == [[1, 2]]
    with pytest.raises(ValueError, match="2-d of integer item ids"):
        check_histories(torch.tensor([[1.0, 2.0]]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories=st.lists(st.lists(st.integers(0, 4343), min_size=1, max_size=25), min_size=1, max_size=4))
def test_recommend_returns_only_catalogue_items_and_never_repeats_one(tiny_model, tokenizer, histories):
    result = tiny_model.recommend(histories, tokenizer, top_k=10)
    for row in result.items.tolist():
        assert all(0 <= item < tokenizer.num_items for item in row)
        assert len(set(row)) == len(row)
        check_ranked_list(row, "recommend")  # the metric would take it as it is


def test_a_stock_tokenizer_round_trip_keeps_the_raw_ids(tokenizer, scientific, tmp_path):
    """A copy saved by save_pretrained alone (or pulled from the Hub) once served indices as raw ids."""
    named = SemanticIDTokenizer(
        item_codes=tokenizer.item_codes,
        num_levels=tokenizer.num_levels,
        codebook_size=tokenizer.codebook_size,
        item_ids=scientific.item_ids,
        item_titles=scientific.item_titles,
    )
    saved = named.save_pretrained(str(tmp_path))
    assert any(path.endswith("items.jsonl") for path in saved)
    loaded = SemanticIDTokenizer.from_pretrained(str(tmp_path))
    assert loaded.item_ids == list(map(str, scientific.item_ids))
    assert loaded.item_titles == scientific.item_titles
    assert loaded.code_fingerprint == named.code_fingerprint
    first = json.loads((tmp_path / "items.jsonl").read_text().splitlines()[0])
    assert first == {"index": 0, "item_id": str(scientific.item_ids[0]), "title": scientific.item_titles[0]}


def test_the_code_fingerprint_changes_with_any_code(tokenizer):
    codes = tokenizer.item_codes.clone()
    same = SemanticIDTokenizer(item_codes=codes.clone(), num_levels=4, codebook_size=32)
    assert same.code_fingerprint == tokenizer.code_fingerprint and len(same.code_fingerprint) == 16
    codes[[0, 1]] = codes[[1, 0]]  # two items swap codes: the same set of codes, another table
    assert SemanticIDTokenizer(item_codes=codes, num_levels=4, codebook_size=32).code_fingerprint != (
        tokenizer.code_fingerprint
    )


def test_a_model_refuses_a_tokenizer_with_another_code_table(tiny_model, tokenizer):
    tiny_model.config.code_fingerprint = tokenizer.code_fingerprint
    try:
        swapped = tokenizer.item_codes.clone()
        swapped[[0, 1]] = swapped[[1, 0]]
        other = SemanticIDTokenizer(item_codes=swapped, num_levels=4, codebook_size=32)
        with pytest.raises(ValueError, match="come from another run"):
            tiny_model.recommend([[0, 1]], other, top_k=3)
        tiny_model.recommend([[0, 1]], tokenizer, top_k=3)  # its own codes pass
    finally:
        del tiny_model.config.code_fingerprint


def test_a_generation_config_cannot_break_constrained_decoding(tiny_model, tokenizer):
    """max_new_tokens: 2 in generation_config.json ended in a tensor-size error."""
    expected = tiny_model.recommend_with_generate([[0, 1, 2]], tokenizer, top_k=3)
    saved = tiny_model.generation_config
    tiny_model.generation_config = GenerationConfig(**{**saved.to_dict(), "max_new_tokens": 2, "do_sample": True})
    try:
        got = tiny_model.recommend_with_generate([[0, 1, 2]], tokenizer, top_k=3)
    finally:
        tiny_model.generation_config = saved
    assert torch.equal(got.items, expected.items)


def test_a_codebook_larger_than_the_catalogue_is_refused_before_any_work():
    """60 items with the default 256 codes crashed inside k-means after the embedding step."""
    recipe = load_recipe(DEMO, ["quantizer.codebook_size=256"])
    with pytest.raises(RecipeError, match=r"codebook_size=256 is larger than this catalogue of 60 items") as info:
        check_codebook_fits(recipe, 60)
    assert "quantizer.codebook_size=8" in str(info.value)
    check_codebook_fits(load_recipe(DEMO, ["quantizer.codebook_size=16"]), 60)
    with pytest.raises(RecipeError, match="fit_sample"):
        check_codebook_fits(load_recipe(DEMO, ["quantizer.codebook_size=64", "quantizer.fit_sample=50"]), 1000)


def small_catalogue(folder, spell=str):
    """A real slice of Scientific (300 interactions) written as CSV, its items' ids spelt by ``spell``."""
    folder.mkdir()
    with gzip.open(SCIENTIFIC / "interactions.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()[:301]
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    items = {line.split(",")[1] for line in lines[1:]}
    with gzip.open(SCIENTIFIC / "items.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [{**row, "item_id": spell(row["item_id"])} for row in rows if str(row["item_id"]) in items]
    (folder / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return DataConfig(path=str(folder), min_user_interactions=2, min_item_interactions=1, text_fields=["title"])


@pytest.mark.parametrize("spell", [lambda raw: f" {raw}", lambda raw: f"{raw}.0", lambda raw: str(raw).zfill(4)])
def test_ids_spelt_differently_in_the_item_table_are_an_error_not_a_collision(tmp_path, spell):
    """'3.0', '0003' or ' A3' against '3' gave one warning, then '60 items share one semantic ID ... train longer'."""
    same = load_sequential_data(small_catalogue(tmp_path / "same"), verbose=False)
    assert all(same.item_titles)  # spelt alike, every item finds its row
    with pytest.raises(DataFormatError, match="Ids are matched as exact strings") as info:
        load_sequential_data(small_catalogue(tmp_path / "other", spell), verbose=False)
    assert "the item table like" in str(info.value)


def test_items_without_text_are_refused_for_text_codes(tmp_path):
    config = small_catalogue(tmp_path / "blank", str)
    rows = [json.loads(line) for line in (tmp_path / "blank" / "items.jsonl").read_text().splitlines()]
    (tmp_path / "blank" / "items.jsonl").write_text("".join(json.dumps({**r, "title": ""}) + "\n" for r in rows))
    with pytest.warns(UserWarning, match="every item's text is empty"):
        data = load_sequential_data(config, verbose=False)
    with pytest.raises(RecipeError, match="have no text in data.text_fields"):
        check_item_texts(load_recipe(DEMO), data)
    check_item_texts(load_recipe(DEMO, ["embeddings.source=collaborative"]), data)  # no text needed there


def test_the_card_template_keeps_a_blank_line_between_the_data_table_and_the_split():
    """'{%- if data.drop_last %}' ate the blank line: GFM then read 'Split: ...' as a row of the data table."""
    text = (ROOT / "model_cards" / "template.md").read_text()
    table_end = text.index('{{ "{:,}".format(test_examples) }} |')
    after = text[table_end:]
    assert after.split("\n", 1)[1].startswith("\n")  # a blank line right after the table's last row
    assert "{%- if data.drop_last" not in text


def test_the_cli_and_recommender_serve_a_sasrec_run(sasrec_run, capsys):
    """`sidrec recommend` on a SASRec run said its directory was incomplete; it is served like the others."""
    from sidrec import load_recommender
    from sidrec.cli import main

    out, _ = sasrec_run
    recommender = load_recommender(out / "model")
    assert recommender.ranks_items
    raw = recommender.item_ids[:3]
    rows = recommender.recommend(raw, top_k=5)
    direct = recommender.model.recommend([[0, 1, 2]], top_k=5)
    assert [recommender.index_of[row.item_id] for row in rows] == direct.items[0].tolist()
    assert [row.score for row in rows] == pytest.approx(direct.scores[0].tolist())
    excluded = recommender.recommend(raw, top_k=5, exclude_history=True)
    assert len(excluded) == 5 and not {row.item_id for row in excluded} & set(raw)  # full ranking: still 5 items
    assert main(["recommend", str(out / "model"), "--history", *raw, "--top-k", "5"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == [row.item_id for row in rows]
    with pytest.raises(ValueError, match="ranks the whole catalogue"):
        recommender.recommend(raw, num_beams=10)


def test_a_catalogue_smaller_than_top_k_leaves_empty_slots_not_repeats(tmp_path, capsys):
    """Four items, top 10: slots 5-10 are -1 / -inf; the run's printout once showed them as the last item."""
    from sidrec import SIDT5ForConditionalGeneration
    from sidrec.training.data import load_sequential_data
    from sidrec.training.stages.results import show_recommendations

    from .conftest import tiny_config

    codes = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    tokenizer = SemanticIDTokenizer(item_codes=codes, num_levels=4, codebook_size=2)
    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer)).eval()
    result = model.recommend([[0, 1]], tokenizer, top_k=10, num_beams=10)
    items = result.items[0].tolist()
    assert sorted(items[:4]) == [0, 1, 2, 3] and items[4:] == [-1] * 6
    assert torch.isinf(result.scores[0, 4:]).all() and torch.isfinite(result.scores[0, :4]).all()
    metrics = ranking_metrics(result.items, torch.tensor([2]), ks=(10,))
    assert metrics["recall@10"] == 1.0  # empty slots are no item, not a repeat

    folder = tmp_path / "four"
    folder.mkdir()
    users = [f"u{u}" for u in range(3)]
    lines = ["user_id,item_id,position"] + [f"{u},{i},{p}" for u in users for p, i in enumerate(["a", "b", "c", "d"])]
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    (folder / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in "abcd")
    )
    data = load_sequential_data(DataConfig(path=str(folder), min_item_interactions=1, min_user_interactions=4,
                                           text_fields=["title"]), verbose=False)  # fmt: skip
    show_recommendations(model, tokenizer, data, 0, top_k=10)
    shown = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\s*\d+\. \[", line)]
    assert len(shown) == 4  # the four items, then nothing


def test_every_reader_drops_repeated_user_item_rows_alike_and_says_so(tmp_path, capsys):
    """The table reader kept repeats and the Amazon reader dropped them; now one stated policy for both."""
    folder = tmp_path / "repeats"
    folder.mkdir()
    rows = [(u, i) for u in range(3) for i in range(5)] + [(0, 1)]  # user 0 comes back to item 1 at the end
    lines = ["user_id,item_id,position"] + [f"{u},{i},{p}" for p, (u, i) in enumerate(rows)]
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    (folder / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"t{i}"}) + "\n" for i in range(5)))
    config = dict(path=str(folder), min_user_interactions=4, min_item_interactions=1, text_fields=["title"])
    kept_first = load_sequential_data(DataConfig(**config), verbose=True)
    assert "dropped 1 repeated (user, item) rows" in capsys.readouterr().out
    assert list(kept_first.sequences[0]) == [0, 1, 2, 3, 4]
    with_repeats = load_sequential_data(DataConfig(**config, deduplicate=False), verbose=False)
    assert list(with_repeats.sequences[0]) == [0, 1, 2, 3, 4, 1]
