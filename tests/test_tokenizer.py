"""SemanticIDTokenizer: encoding by hand, bad input, save/load with identical codes, AutoTokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from sidrec import SemanticIDTokenizer

CODES = torch.tensor([[0, 1, 0], [0, 1, 1], [2, 3, 0], [0, 1, 2], [2, 2, 0]])


def small_tokenizer(**kwargs) -> SemanticIDTokenizer:
    values = dict(item_codes=CODES, num_levels=3, codebook_size=4, max_history=2)
    values.update(kwargs)
    return SemanticIDTokenizer(**values)


def test_vocabulary_layout():
    tok = small_tokenizer(num_user_buckets=2)
    assert tok.vocab_size == 3 + 3 * 4 + 2
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 7, 11, 14, 15]) == [
        "<pad>",
        "</s>",
        "<unk>",
        "<a_0>",
        "<b_0>",
        "<c_0>",
        "<c_3>",
        "<u_0>",
    ]
    assert tok.token_offsets == [3, 7, 11]


def test_encode_histories_by_hand():
    tok = small_tokenizer()
    batch = tok.encode_histories([[2], [0, 4]])
    # item 2 = (2, 3, 0) -> 5, 10, 11; item 0 = (0, 1, 0) -> 3, 8, 11; item 4 = (2, 2, 0) -> 5, 9, 11
    assert batch["input_ids"].tolist() == [[5, 10, 11, 1, 0, 0, 0], [3, 8, 11, 5, 9, 11, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]


def test_user_token_is_prepended_and_hashed():
    tok = small_tokenizer(num_user_buckets=2)
    batch = tok.encode_histories([[2]], users=[5])
    assert batch["input_ids"].tolist() == [[15 + 1, 5, 10, 11, 1]]


def test_long_history_keeps_the_most_recent_items():
    tok = small_tokenizer()  # max_history=2
    assert torch.equal(tok.encode_histories([[1, 3, 0, 4]])["input_ids"], tok.encode_histories([[0, 4]])["input_ids"])


def test_empty_history_and_unknown_item_are_clear_errors():
    tok = small_tokenizer()
    with pytest.raises(ValueError, match="History 1 is empty.*popularity"):
        tok.encode_histories([[1], []])
    with pytest.raises(ValueError, match="Unknown item id 9.*0..4"):
        tok.encode_histories([[1, 9]])
    with pytest.raises(ValueError, match="Unknown item id -1"):
        tok.encode_targets([-1])


def test_targets_round_trip_and_invalid_codes_decode_to_minus_one():
    tok = small_tokenizer()
    labels = tok.encode_targets([4, 0, 3])
    assert tok.items_from_token_ids(labels).tolist() == [4, 0, 3]
    assert tok.items_from_token_ids(torch.tensor([[3, 8, 14], [1, 8, 11]])).tolist() == [-1, -1]


def test_text_round_trip():
    tok = small_tokenizer()
    ids = tok("<a_2><b_3><c_0>")["input_ids"]
    assert ids == [5, 10, 11]
    assert tok.decode(ids) == "<a_2><b_3><c_0>"


def test_missing_code_table_is_a_clear_error():
    with pytest.raises(ValueError, match="needs its item code table"):
        SemanticIDTokenizer()


def test_save_load_restores_identical_codes(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.item_codes, tokenizer.item_codes)
    assert (loaded.max_history, loaded.num_levels, loaded.codebook_size) == (20, 4, 32)
    for mine, theirs in zip(loaded.trie.children, tokenizer.trie.children):
        assert torch.equal(mine, theirs)


def test_autotokenizer_loads_a_saved_tokenizer(tokenizer, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, SemanticIDTokenizer)
    assert torch.equal(loaded.item_codes, tokenizer.item_codes)


def test_set_item_codes_rebuilds_the_trie():
    tok = small_tokenizer()
    tok.set_item_codes(torch.tensor([[1, 1, 0], [3, 0, 0], [0, 0, 0], [2, 0, 0], [1, 0, 0]]))
    assert tok.trie.children[0].tolist() == [[0, 1, 2, 3]]
    assert tok.items_from_token_ids(tok.encode_targets([1]))[0].item() == 1


def test_item_index_marks_the_item_behind_each_code_token():
    codes = torch.tensor([[0, 1], [1, 0], [1, 1]])
    tok = SemanticIDTokenizer(item_codes=codes, num_levels=2, codebook_size=2, num_user_buckets=2)
    batch = tok.encode_histories([[2, 0], [1]], users=[0, 1], return_item_index=True)
    # rows: <u_0> a1 b1 a0 b1 </s> / <u_1> a1 b0 </s> <pad> <pad>
    assert batch["input_ids"].tolist() == [[7, 4, 6, 3, 6, 1], [8, 4, 5, 1, 0, 0]]
    assert batch["item_index"].tolist() == [[-1, 2, 2, 0, 0, -1], [-1, 1, 1, -1, -1, -1]]
    assert "item_index" not in tok.encode_histories([[2, 0]])


def test_tokenizer_saves_and_loads_its_quantizer(fitted, title_embeddings, tmp_path):
    tok = SemanticIDTokenizer(item_codes=fitted.codes, quantizer=fitted.quantizer, num_levels=4, codebook_size=32)
    tok.save_pretrained(tmp_path)
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.distance_scale, fitted.quantizer.distance_scale)
    assert torch.equal(loaded.quantizer.encode_codes(title_embeddings), fitted.codes[:, :3])
    (tmp_path / "quantizer.safetensors").unlink()  # a decoding-only tokenizer: codes, no quantizer
    assert SemanticIDTokenizer.from_pretrained(tmp_path).quantizer is None
