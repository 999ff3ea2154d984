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


def test_sparse_levels_answer_exactly_like_dense_ones_by_hand():
    dense, sparse = PrefixTrie(CODES, 4, OFFSETS, layout="dense"), PrefixTrie(CODES, 4, OFFSETS, layout="sparse")
    assert sparse.layouts == ["sparse"] * 3 and dense.layouts == ["dense"] * 3
    for mine, theirs in zip(sparse.children, dense.children):
        assert torch.equal(mine, theirs)
    nodes = torch.tensor([[1, 0], [2, 2]])  # any shape of prefix nodes
    assert torch.equal(sparse.next_nodes(2, nodes), dense.next_nodes(2, nodes))
    tokens = CODES + torch.tensor(OFFSETS)
    assert sparse.walk(tokens).tolist() == [0, 1, 2, 3, 4]
    assert sparse.walk(torch.tensor([[3, 8, 14], [5, 10, 11]])).tolist() == [-1, 2]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_layout_holds_exactly_the_valid_codes(data):
    """Property: against a brute-force set of valid prefixes, for random catalogues and both layouts."""
    size, levels = data.draw(st.integers(2, 6)), data.draw(st.integers(1, 4))
    rows = data.draw(st.lists(st.tuples(*[st.integers(0, size - 1)] * levels), min_size=1, max_size=40, unique=True))
    codes = torch.tensor(rows)
    offsets = [3 + size * level for level in range(levels)]
    prefixes = {tuple(row[:n]) for row in rows for n in range(levels + 1)}
    for layout in ("dense", "sparse", "auto"):
        trie = PrefixTrie(codes, size, offsets, layout=layout)
        node_of = {(): 0}
        for level in range(levels):
            for prefix, node in [(p, n) for p, n in node_of.items() if len(p) == level]:
                children = trie.next_nodes(level, torch.tensor([node]))[0].tolist()
                assert {c for c in range(size) if children[c] >= 0} == {
                    c for c in range(size) if prefix + (c,) in prefixes
                }
                node_of.update({prefix + (c,): children[c] for c in range(size) if children[c] >= 0})
        assert trie.walk(codes + torch.tensor(offsets)).tolist() == list(range(len(rows)))  # leaves are the items


def test_a_large_sparse_catalogue_holds_its_edges_not_dense_tables():
    generator = torch.Generator().manual_seed(0)
    codes = torch.unique(torch.randint(0, 256, (60_000, 4), generator=generator), dim=0)
    trie = PrefixTrie(codes, 256, [3, 259, 515, 771])
    assert trie.layouts == ["dense", "dense", "sparse", "sparse"]  # 1 and 256 prefixes: small tables stay dense
    dense_bytes = sum(
        8 * 256 * n for n in (1, 256, len(torch.unique(codes[:, :2], dim=0)), len(torch.unique(codes[:, :3], dim=0)))
    )
    assert trie.nbytes < dense_bytes / 20
    items = torch.randperm(len(codes), generator=generator)[:500]
    assert torch.equal(trie.walk(codes[items] + torch.tensor([3, 259, 515, 771])), items)


def test_beam_search_ranks_the_same_over_a_sparse_trie(tiny_model, tokenizer, scientific):
    from sidrec import SemanticIDTokenizer

    sparse = SemanticIDTokenizer(item_codes=tokenizer.item_codes, num_levels=4, codebook_size=32, max_history=20)
    sparse._trie = PrefixTrie(sparse.item_codes, 32, sparse.token_offsets, layout="sparse")
    histories = [row["history"] for row in scientific.splits["test"].select(range(64))]
    expected = tiny_model.recommend(histories, tokenizer, top_k=10, num_beams=10)
    found = tiny_model.recommend(histories, sparse, top_k=10, num_beams=10)
    assert sparse.trie.layouts == ["sparse"] * 4
    assert torch.equal(found.items, expected.items)
    torch.testing.assert_close(found.scores, expected.scores)
    # The stock-generate route (the LogitsProcessor) reads the same levels and finds the same items.
    stock = tiny_model.recommend_with_generate(histories[:8], sparse, top_k=10, num_beams=10)
    assert torch.equal(stock.items, tiny_model.recommend_with_generate(histories[:8], tokenizer, 10, 10).items)


@settings(deadline=None, max_examples=25)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["auto", "dense", "sparse"]))
def test_prefix_nodes_are_numbered_in_lexicographic_order(seed, layout):
    """Each level's node of a prefix is that prefix's rank among the distinct prefixes, sorted.

    The trie numbers prefixes from the distinct (parent, code) pairs; this pins that the numbering is
    the one ``unique(dim=0)`` on the prefixes gives (what the trie built before, and what DIGER's
    per-epoch rebuild and ``walk`` rely on).
    """
    generator = torch.Generator().manual_seed(seed)
    codes = torch.unique(torch.randint(0, 6, (40, 3), generator=generator), dim=0)
    codes = codes[torch.randperm(len(codes), generator=generator)]  # items in no particular order
    trie = PrefixTrie(codes, 6, [1, 7, 13], layout=layout)
    tokens = codes + torch.tensor([1, 7, 13])
    for level in range(codes.size(1) - 1):
        _, expected = torch.unique(codes[:, : level + 1], dim=0, return_inverse=True)
        assert torch.equal(trie.walk(tokens[:, : level + 1]), expected)
    assert torch.equal(trie.walk(tokens), torch.arange(len(codes)))  # a full ID's node is its item
