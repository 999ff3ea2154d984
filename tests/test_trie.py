"""The dense prefix trie and the vectorised LogitsProcessor: never an invalid item."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec import PrefixTrie, PrefixTrieLogitsProcessor

CODES = torch.tensor([[0, 1, 0], [0, 1, 1], [2, 3, 0], [0, 1, 2], [2, 2, 0]])
OFFSETS = [3, 7, 11]


def test_trie_tables_by_hand():
    trie = PrefixTrie(CODES, 4, OFFSETS)
    assert trie.children[0].tolist() == [[0, -1, 1, -1]]  # roots: prefixes (0,) and (2,)
    assert trie.children[1].tolist() == [[-1, 0, -1, -1], [-1, -1, 1, 2]]
    assert trie.children[2].tolist() == [[0, 1, 3, -1], [4, -1, -1, -1], [2, -1, -1, -1]]  # leaves are items
    tokens = CODES + torch.tensor(OFFSETS)
    assert trie.walk(tokens).tolist() == [0, 1, 2, 3, 4]
    assert trie.walk(torch.tensor([[3, 8, 14]])).tolist() == [-1]  # (0, 1, 3) is nobody's code


def test_trie_rejects_duplicate_codes():
    import pytest

    with pytest.raises(ValueError, match="collision level"):
        PrefixTrie(torch.tensor([[0, 1], [0, 1]]), 4, [3, 7])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_processor_allows_exactly_the_valid_continuations(data):
    """Property: under random logits, greedy decoding through the processor always lands on an item."""
    trie = PrefixTrie(CODES, 4, OFFSETS)
    processor = PrefixTrieLogitsProcessor(trie)
    valid_prefixes = {tuple(row[:n]) for row in CODES.tolist() for n in range(4)}
    rows = data.draw(st.integers(1, 6))
    sequence = torch.zeros(rows, 1, dtype=torch.long)  # decoder start token
    for step in range(3):
        logits = torch.tensor(
            data.draw(st.lists(st.lists(st.floats(-50, 50), min_size=16, max_size=16), min_size=rows, max_size=rows))
        )
        masked = processor(sequence, logits)
        allowed = torch.isfinite(masked)
        for row in range(rows):
            prefix = tuple((sequence[row, 1:] - torch.tensor(OFFSETS[:step])).tolist())
            expected = {OFFSETS[step] + code for code in range(4) if prefix + (code,) in valid_prefixes}
            assert set(allowed[row].nonzero().flatten().tolist()) == expected
        sequence = torch.cat([sequence, masked.argmax(-1, keepdim=True)], dim=1)
    items = trie.walk(sequence[:, 1:])
    assert (items >= 0).all()
