"""The prefix trie of valid semantic IDs as dense per-level tensors.

Constrained beam search asks "which codes may follow this prefix?" once per beam and step. Storing
the trie as one (nodes_at_level, K) table per level turns that question into a single ``gather``
over all beams at once: no Python callback per beam, no dictionaries.
"""

from __future__ import annotations

import torch


class PrefixTrie:
    """Valid code prefixes of a catalogue.

    ``children[l][node, code]`` is the node reached from ``node`` (a prefix of length ``l``) by
    ``code``, or -1 if no item has that prefix. Level 0 has the single root node 0. At the last
    level the value is the item index itself, so a finished beam's node *is* its item.

    Args:
        codes: (N, L) unique code rows, one per item index.
        codebook_size: K, the width of each table (every level uses codes ``0..K-1``).
        token_offsets: the token id of code 0 at each level, for turning codes into vocabulary ids.
    """

    def __init__(self, codes: torch.LongTensor, codebook_size: int, token_offsets: list[int]):
        if codes.dim() != 2:
            raise ValueError(f"codes must be (N, L), got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
            raise ValueError(f"codes must lie in [0, {codebook_size}); got [{codes.min()}, {codes.max()}]")
        num_items, num_levels = codes.shape
        if len(token_offsets) != num_levels:
            raise ValueError(f"{len(token_offsets)} token offsets for {num_levels} levels")
        if torch.unique(codes, dim=0).size(0) != num_items:
            raise ValueError("two items share a full semantic ID; append a collision level first")
        self.codebook_size = codebook_size
        self.token_offsets = list(token_offsets)
        self.num_items = num_items
        self.children: list[torch.LongTensor] = []
        parent = torch.zeros(num_items, dtype=torch.long)  # node id of each item's prefix at this level
        num_parents = 1
        for level in range(num_levels):
            if level == num_levels - 1:
                child = torch.arange(num_items)
            else:
                _, child = torch.unique(codes[:, : level + 1], dim=0, return_inverse=True)
            table = torch.full((num_parents, codebook_size), -1, dtype=torch.long)
            table[parent, codes[:, level]] = child
            self.children.append(table)
            parent, num_parents = child, int(child.max()) + 1 if num_items else 0

    @property
    def num_levels(self) -> int:
        return len(self.children)

    def to(self, device: torch.device | str) -> PrefixTrie:
        """Move the tables to ``device`` in place (they are read on the device beam search runs on)."""
        self.children = [table.to(device) for table in self.children]
        return self

    def walk(self, tokens: torch.LongTensor) -> torch.LongTensor:
        """Node ids (...,) reached by the vocabulary ids ``tokens`` (..., t); -1 once off the trie."""
        node = torch.zeros(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
        for level in range(tokens.size(-1)):
            code = tokens[..., level] - self.token_offsets[level]
            valid = (node >= 0) & (code >= 0) & (code < self.codebook_size)
            step = self.children[level][node.clamp_min(0), code.clamp(0, self.codebook_size - 1)]
            node = torch.where(valid, step, torch.full_like(node, -1))
        return node
