"""Property tests (hypothesis): each property checked against a brute-force reference written here.

- the tokenizer's item <-> token-id maps are inverse on the real Scientific code table;
- ``append_collision_level`` numbers the items of every group of identical codes 0..n-1;
- Recall/NDCG/MRR/HitRate equal a count over the ranked lists and stay within [0, 1];
- k-core filtering is a fixpoint, leaves every user and item with k interactions, and keeps exactly
  what naive repeated deletion keeps (on generated interactions and on windows of the real data);
- the leave-one-out history windows equal naive slicing of each user's sequence.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.tokenization.semantic_codes import append_collision_level
from sidrec.training.data import k_core
from sidrec.training.data import sequences as sequences_module
from sidrec.training.data.sequences import MIN_SEQUENCE, _build_splits
from sidrec.training.metrics import ranking_metrics
from sidrec.training.ranking import score_rankings

from .conftest import SCIENTIFIC


# ----- 1. tokenizer: item indices <-> code token ids ----------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(st.data())
def test_item_token_ids_round_trip_through_items_from_token_ids(tokenizer, data):
    items = data.draw(st.lists(st.integers(0, tokenizer.num_items - 1), min_size=1, max_size=40), label="items")
    tokens = tokenizer.item_token_ids(torch.tensor(items))
    # by hand: code c at level l is token 3 + l * K + c (<pad>, </s> and <unk> come first)
    codes = tokenizer.item_codes[items]
    levels = torch.arange(tokenizer.num_levels)
    assert torch.equal(tokens, 3 + levels * tokenizer.codebook_size + codes)
    assert tokenizer.items_from_token_ids(tokens).tolist() == items
    assert torch.equal(tokenizer.encode_targets(items), tokens)


@settings(deadline=None, max_examples=40)
@given(st.data())
def test_encoded_histories_decode_to_their_last_max_history_items(tokenizer, data):
    histories = data.draw(
        st.lists(st.lists(st.integers(0, tokenizer.num_items - 1), min_size=1, max_size=30), min_size=1, max_size=4),
        label="histories",
    )
    encoded = tokenizer.encode_histories(histories)
    for row, history in enumerate(histories):
        ids = encoded["input_ids"][row][encoded["attention_mask"][row].bool()]
        assert ids[-1].item() == tokenizer.eos_token_id
        decoded = tokenizer.items_from_token_ids(ids[:-1].view(-1, tokenizer.num_levels)).tolist()
        assert decoded == history[-tokenizer.max_history :]


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_a_code_no_item_has_decodes_to_minus_one(tokenizer, data):
    """Against a dict of the code table: a code tuple is its item, or -1 when nobody has it."""
    table = {tuple(row): item for item, row in enumerate(tokenizer.item_codes.tolist())}
    code = tokenizer.item_codes[data.draw(st.integers(0, tokenizer.num_items - 1), label="item")].tolist()
    level = data.draw(st.integers(0, tokenizer.num_levels - 1), label="level")
    code[level] = data.draw(st.integers(0, tokenizer.codebook_size - 1), label="code")  # often a sibling or nobody
    tokens = torch.tensor(code) + torch.tensor(tokenizer.token_offsets)
    assert tokenizer.items_from_token_ids(tokens).item() == table.get(tuple(code), -1)


# ----- 2. append_collision_level -----------------------------------------------------------------------
@st.composite
def code_tables(draw):
    rows = draw(st.integers(1, 40))
    levels = draw(st.integers(1, 3))
    values = draw(st.integers(0, 3))  # few distinct codes, so groups of identical codes are common
    cells = draw(st.lists(st.integers(0, values), min_size=rows * levels, max_size=rows * levels))
    return torch.tensor(cells, dtype=torch.long).view(rows, levels)


@settings(deadline=None, max_examples=200)
@given(code_tables(), st.integers(1, 12))
def test_collision_level_numbers_each_group_in_catalogue_order(codes, max_group_size):
    seen: Counter = Counter()
    expected = []
    for row in codes.tolist():  # naive: the k-th occurrence of a code gets k
        expected.append(seen[tuple(row)])
        seen[tuple(row)] += 1
    if max(seen.values()) > max_group_size:
        with pytest.raises(ValueError, match=f"{max(seen.values())} items share one semantic ID"):
            append_collision_level(codes, max_group_size)
        return
    result = append_collision_level(codes, max_group_size)
    assert result.shape == (codes.size(0), codes.size(1) + 1)
    assert torch.equal(result[:, :-1], codes)  # the original columns, untouched
    assert result[:, -1].tolist() == expected
    assert len({tuple(row) for row in result.tolist()}) == codes.size(0)  # every row unique


# ----- 3. ranking metrics -------------------------------------------------------------------------------
@st.composite
def rankings(draw, item_sets: bool):
    """(ranked lists of distinct items, -1 for empty slots; targets: one item or a -1-padded set per user)."""
    num_items = draw(st.integers(1, 30))
    users = draw(st.integers(1, 6))
    width = draw(st.integers(1, 12))
    ranked, targets = [], []
    for _ in range(users):
        shown = draw(st.lists(st.integers(0, num_items - 1), unique=True, max_size=min(width, num_items)))
        ranked.append(shown + [-1] * (width - len(shown)))
        if item_sets:
            held = draw(st.lists(st.integers(0, num_items - 1), unique=True, min_size=1, max_size=5))
            targets.append(held)
        else:
            targets.append(draw(st.integers(0, num_items - 1)))
    ks = tuple(sorted(draw(st.sets(st.integers(1, width), min_size=1, max_size=3))))
    return ranked, targets, ks, num_items


def brute_force_metrics(ranked, targets, ks, num_items):
    """Recall, NDCG, MRR, HitRate and coverage at each k, counted over the lists one user at a time."""
    expected = {}
    for k in ks:
        recall = ndcg = mrr = hit = 0.0
        for shown, relevant in zip(ranked, targets):
            relevant = {relevant} if isinstance(relevant, int) else set(relevant)
            positions = [rank for rank, item in enumerate(shown[:k]) if item in relevant]
            recall += len(positions) / len(relevant)
            ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
            ndcg += sum(1 / math.log2(rank + 2) for rank in positions) / ideal
            mrr += 1 / (positions[0] + 1) if positions else 0.0
            hit += bool(positions)
        users = len(ranked)
        expected |= {f"recall@{k}": recall / users, f"ndcg@{k}": ndcg / users}
        expected |= {f"mrr@{k}": mrr / users, f"hit_rate@{k}": hit / users}
        shown_items = {item for shown in ranked for item in shown[:k] if item >= 0}
        expected[f"coverage@{k}"] = len(shown_items) / num_items
    return expected


@settings(deadline=None, max_examples=150)
@given(st.booleans().flatmap(rankings))
def test_ranking_metrics_equal_a_brute_force_count(case):
    ranked, targets, ks, num_items = case
    padded = targets
    if isinstance(targets[0], list):
        longest = max(len(t) for t in targets)
        padded = [t + [-1] * (longest - len(t)) for t in targets]
    metrics = ranking_metrics(torch.tensor(ranked), torch.tensor(padded), ks, num_items=num_items)
    assert metrics == pytest.approx(brute_force_metrics(ranked, targets, ks, num_items))
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    for k in ks:  # a user's reciprocal rank is at most 1 and only counts on a hit
        assert metrics[f"mrr@{k}"] <= metrics[f"hit_rate@{k}"] + 1e-12
    # the evaluation's entry point (leave-one-out `target` rows or DMRec's `held_out` sets) agrees
    rows = {"held_out": targets} if isinstance(targets[0], list) else {"target": targets}
    scored = score_rankings(torch.tensor(ranked), rows, ks, num_items)
    expected = brute_force_metrics(ranked, targets, ks, num_items)
    if "target" in rows:  # leave-one-out reports no coverage
        expected = {name: value for name, value in expected.items() if not name.startswith("coverage")}
    assert scored == pytest.approx(expected)


@settings(deadline=None, max_examples=60)
@given(rankings(item_sets=False))
def test_leave_one_out_metrics_from_the_target_rank(case):
    """With one held-out item, Recall@k = [rank < k] and NDCG@k = 1/log2(rank + 2), from the target's rank."""
    ranked, targets, ks, _ = case
    metrics = ranking_metrics(torch.tensor(ranked), torch.tensor(targets), ks)
    ranks = [shown.index(target) if target in shown else None for shown, target in zip(ranked, targets)]
    for k in ks:
        hits = [rank for rank in ranks if rank is not None and rank < k]
        assert metrics[f"recall@{k}"] == pytest.approx(len(hits) / len(ranked))
        assert metrics[f"hit_rate@{k}"] == pytest.approx(len(hits) / len(ranked))
        assert metrics[f"ndcg@{k}"] == pytest.approx(sum(1 / math.log2(r + 2) for r in hits) / len(ranked))
        assert metrics[f"mrr@{k}"] == pytest.approx(sum(1 / (r + 1) for r in hits) / len(ranked))


# ----- 4. k-core -----------------------------------------------------------------------------------------
def naive_k_core(users: list[int], items: list[int], min_user: int, min_item: int) -> list[bool]:
    """Delete every interaction of an under-threshold user or item, recount, repeat until nothing changes."""
    keep = [True] * len(users)
    changed = True
    while changed:
        user_counts = Counter(u for u, k in zip(users, keep) if k)
        item_counts = Counter(i for i, k in zip(items, keep) if k)
        new = [k and user_counts[u] >= min_user and item_counts[i] >= min_item for u, i, k in zip(users, items, keep)]
        changed, keep = new != keep, new
    return keep


def check_k_core(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> None:
    keep = k_core(users, items, min_user, min_item)
    assert keep.tolist() == naive_k_core(users.tolist(), items.tolist(), min_user, min_item)
    kept_users, kept_items = users[keep], items[keep]
    assert all(count >= min_user for count in Counter(kept_users.tolist()).values())
    assert all(count >= min_item for count in Counter(kept_items.tolist()).values())
    assert k_core(kept_users, kept_items, min_user, min_item).all()  # a fixpoint: filtering again drops nothing


@settings(deadline=None, max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=120),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_k_core_is_a_fixpoint_with_k_interactions_each(pairs, min_user, min_item):
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    check_k_core(users, items, min_user, min_item)


@lru_cache(maxsize=1)
def scientific_interactions() -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(SCIENTIFIC / "interactions.csv.gz")
    return frame["user_id"].to_numpy(np.int64), frame["item_id"].to_numpy(np.int64)


@settings(deadline=None, max_examples=25)
@given(st.integers(0, 40_000), st.integers(50, 1500), st.integers(2, 6), st.integers(2, 6))
def test_k_core_on_windows_of_the_real_interactions(start, length, min_user, min_item):
    users, items = scientific_interactions()
    start = min(start, len(users) - 1)
    check_k_core(users[start : start + length], items[start : start + length], min_user, min_item)


# ----- 5. history windows -----------------------------------------------------------------------------------
def naive_splits(sequences: list[list[int]], max_history: int) -> dict[str, list[tuple]]:
    """(user, history, target) rows by slicing: train targets s[1..n-3], then validation s[-2], test s[-1]."""
    rows: dict[str, list[tuple]] = {"train": [], "validation": [], "test": []}
    for user, seq in enumerate(sequences):
        for j in range(1, len(seq) - 2):
            rows["train"].append((user, seq[:j][-max_history:], seq[j]))
        rows["validation"].append((user, seq[:-2][-max_history:], seq[-2]))
        rows["test"].append((user, seq[:-1][-max_history:], seq[-1]))
    return rows


@settings(deadline=None, max_examples=40)
@given(
    st.lists(st.lists(st.integers(0, 50), min_size=MIN_SEQUENCE, max_size=14), min_size=1, max_size=6),
    st.integers(1, 6),
)
def test_history_windows_equal_naive_slicing(sequences, max_history):
    flat = np.array([item for seq in sequences for item in seq], dtype=np.int64)
    lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
    splits = _build_splits(flat, lengths, max_history)
    for name, rows in naive_splits(sequences, max_history).items():
        split = splits[name]
        assert list(zip(split["user"], split["history"], split["target"])) == rows


@settings(deadline=None, max_examples=30)
@given(st.data())
def test_real_split_rows_equal_naive_slicing_of_the_users_sequence(scientific, data):
    """On the shipped data: a drawn user's validation and test rows, and a drawn train row, by slicing."""
    max_history = scientific.max_history
    user = data.draw(st.integers(0, scientific.num_users - 1), label="user")
    seq = scientific.sequences[user]
    rows = naive_splits([seq], max_history)
    for name in ("validation", "test"):
        row = scientific.splits[name][user]
        assert (row["user"], row["history"], row["target"]) == (user, *rows[name][0][1:])
    train = scientific.splits["train"]
    first = sum(len(s) - 3 for s in scientific.sequences[:user])  # train rows come user by user
    j = data.draw(st.integers(0, len(seq) - 4), label="train row") if len(seq) > 3 else None
    if j is not None:
        row = train[first + j]
        assert (row["user"], row["history"], row["target"]) == (user, *rows["train"][j][1:])


def test_splits_built_in_small_chunks_equal_one_chunk(scientific, monkeypatch):
    """The chunked window builder (``WINDOW_ROWS`` rows per Arrow chunk) changes no row of any split."""
    flat, lengths = scientific.sequences.flat, scientific.sequences.lengths
    whole = _build_splits(flat, lengths, scientific.max_history)
    monkeypatch.setattr(sequences_module, "WINDOW_ROWS", 997)  # a prime: chunks end mid-user
    chunked = _build_splits(flat, lengths, scientific.max_history)
    assert chunked["train"].data.column("history").num_chunks == -(-len(whole["train"]) // 997)
    for name in whole:
        assert chunked[name].features == whole[name].features
        assert chunked[name].to_dict() == whole[name].to_dict()


def test_split_fingerprints_follow_the_sequences():
    """Splits carry a content hash as their fingerprint (so ``Dataset`` does not pickle them to hash)."""
    flat, lengths = np.arange(12, dtype=np.int64), np.array([5, 7], dtype=np.int64)
    first, again = _build_splits(flat, lengths, 4), _build_splits(flat.copy(), lengths.copy(), 4)
    changed = _build_splits(np.r_[flat[:-1], 99], lengths, 4)
    assert [first[n]._fingerprint for n in first] == [again[n]._fingerprint for n in again]
    assert len({first[n]._fingerprint for n in first}) == 3
    assert all(first[n]._fingerprint != changed[n]._fingerprint for n in first)
    assert _build_splits(flat, lengths, 3)["test"]._fingerprint != first["test"]._fingerprint
