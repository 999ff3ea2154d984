"""The prefix trie of valid semantic IDs: dense tables where a level is dense, CSR rows where it is not.

Constrained beam search asks "which codes may follow these prefixes?" once per step for every beam
at once. A dense (prefixes_at_level, K) table answers with one ``gather``, but most of it is -1 at
deep levels: a 1M-item catalogue with 4 levels of 256 codes would hold about 2.1 GB of tables, over
99% empty. A sparse level keeps only the edges, sorted by (prefix, code) as in a CSR matrix (row
offsets per prefix, then the codes and child nodes of its edges), so memory is O(items x levels);
answering for a batch of prefixes expands their rows into (batch, K) with one vectorised scatter,
without a host synchronisation (STATIC, arXiv 2602.22647, stores its trie the same way). With
``layout="auto"`` a level is dense when its table would be small or at least a quarter full (the
first levels), sparse otherwise.
"""

from __future__ import annotations

import torch

LAYOUTS = ("auto", "dense", "sparse")
SMALL_TABLE = 1 << 16  # entries: a table this small is dense whatever its fill


class DenseLevel:
    """``table[node, code]`` = child node, or -1."""

    def __init__(self, table: torch.LongTensor):
        self.table = table

    def next_nodes(self, node: torch.LongTensor) -> torch.LongTensor:
        return self.table[node]

    def child(self, node: torch.LongTensor, code: torch.LongTensor) -> torch.LongTensor:
        return self.table[node, code]

    def dense(self) -> torch.LongTensor:
        return self.table

    def to(self, device) -> DenseLevel:
        return DenseLevel(self.table.to(device))

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()


class SparseLevel:
    """The level's edges sorted by (parent, code): ``offsets[p] : offsets[p + 1]`` are parent ``p``'s."""

    def __init__(self, parents: torch.LongTensor, codes: torch.LongTensor, children: torch.LongTensor, shape):
        num_parents, self.codebook_size = shape
        keys = parents * self.codebook_size + codes
        order = torch.argsort(keys)
        self.keys, self.codes, self.children = keys[order], codes[order], children[order]
        counts = torch.bincount(parents, minlength=num_parents)
        self.offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.max_degree = int(counts.max()) if len(counts) else 0

    def next_nodes(self, node: torch.LongTensor) -> torch.LongTensor:
        flat = node.reshape(-1)
        start = self.offsets[flat]
        count = self.offsets[flat + 1] - start
        slots = torch.arange(max(self.max_degree, 1), device=node.device)
        position = (start[:, None] + slots).clamp_max(max(len(self.codes) - 1, 0))  # (M, D)
        valid = slots < count[:, None]
        size = self.codebook_size
        column = torch.where(valid, self.codes[position], size)  # invalid slots land in a spare column K
        out = torch.full((len(flat), size + 1), -1, dtype=torch.long, device=node.device)
        out.scatter_(1, column, torch.where(valid, self.children[position], -1))
        return out[:, :size].reshape(*node.shape, size)

    def child(self, node: torch.LongTensor, code: torch.LongTensor) -> torch.LongTensor:
        key = node * self.codebook_size + code
        index = torch.searchsorted(self.keys, key).clamp_max(max(len(self.keys) - 1, 0))
        return torch.where(self.keys[index] == key, self.children[index], -1)

    def dense(self) -> torch.LongTensor:
        return self.next_nodes(torch.arange(len(self.offsets) - 1, device=self.keys.device))

    def to(self, device) -> SparseLevel:
        moved = object.__new__(SparseLevel)
        moved.codebook_size, moved.max_degree = self.codebook_size, self.max_degree
        moved.keys, moved.codes = self.keys.to(device), self.codes.to(device)
        moved.children, moved.offsets = self.children.to(device), self.offsets.to(device)
        return moved

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.codes, self.children, self.offsets))


class PrefixTrie:
    """Valid code prefixes of a catalogue.

    ``next_nodes(level, node)`` gives, for prefixes of length ``level`` (node ids, any shape), the
    node reached by each code (..., K), or -1 where no item has that prefix. Level 0 has the single
    root node 0. At the last level the value is the item index itself, so a finished beam's node
    *is* its item.

    Args:
        codes: (N, L) unique code rows, one per item index.
        codebook_size: K, the number of codes per level (every level uses codes ``0..K-1``).
        token_offsets: the token id of code 0 at each level, for turning codes into vocabulary ids.
        layout: ``"auto"`` (dense where a level is dense, sparse elsewhere), ``"dense"`` or ``"sparse"``
            for every level; all give identical answers.
    """

    def __init__(self, codes: torch.LongTensor, codebook_size: int, token_offsets: list[int], layout: str = "auto"):
        if codes.dim() != 2:
            raise ValueError(f"codes must be (N, L), got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
            raise ValueError(f"codes must lie in [0, {codebook_size}); got [{codes.min()}, {codes.max()}]")
        num_items, num_levels = codes.shape
        if len(token_offsets) != num_levels:
            raise ValueError(f"{len(token_offsets)} token offsets for {num_levels} levels")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.codebook_size = codebook_size
        self.token_offsets = list(token_offsets)
        self.num_items = num_items
        self.levels: list[DenseLevel | SparseLevel] = []
        parent = torch.zeros(num_items, dtype=torch.long)  # node id of each item's prefix at this level
        num_parents = 1
        for level in range(num_levels):
            # A prefix one code longer is its parent node and that code: numbering the distinct
            # (parent, code) pairs in sorted order numbers the longer prefixes in lexicographic order
            # (parents are), with one 1-D unique per level (``unique(dim=0)`` on the prefixes was 90%
            # of building a 1M-item trie).
            edges, first = torch.unique(parent * codebook_size + codes[:, level], return_inverse=True)
            if level < num_levels - 1:
                child, edge_child = first, torch.arange(len(edges))
            else:  # the last level's node is the item itself, so every full ID must be distinct
                if len(edges) != num_items:
                    raise ValueError("two items share a full semantic ID; append a collision level first")
                child = torch.arange(num_items)
                edge_child = torch.empty(len(edges), dtype=torch.long).scatter_(0, first, child)
            edge_parent, edge_code = edges // codebook_size, edges % codebook_size
            entries = num_parents * codebook_size
            dense = layout == "dense" or (layout == "auto" and (entries <= SMALL_TABLE or entries <= 4 * len(edges)))
            if dense:
                table = torch.full((num_parents, codebook_size), -1, dtype=torch.long)
                table[edge_parent, edge_code] = edge_child
                self.levels.append(DenseLevel(table))
            else:
                self.levels.append(SparseLevel(edge_parent, edge_code, edge_child, (num_parents, codebook_size)))
            parent, num_parents = child, int(child.max()) + 1 if num_items else 0

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def layouts(self) -> list[str]:
        """Each level's storage, ``dense`` or ``sparse``."""
        return ["dense" if isinstance(level, DenseLevel) else "sparse" for level in self.levels]

    @property
    def nbytes(self) -> int:
        """Bytes the trie holds (all levels)."""
        return sum(level.nbytes for level in self.levels)

    @property
    def children(self) -> list[torch.LongTensor]:
        """Every level as a dense (prefixes, K) table: for inspection and small catalogues only."""
        return [level.dense() for level in self.levels]

    def next_nodes(self, level: int, node: torch.LongTensor) -> torch.LongTensor:
        """Child node per code (..., K) of each prefix node (...,) at ``level`` (-1: no such prefix)."""
        return self.levels[level].next_nodes(node)

    def to(self, device: torch.device | str) -> PrefixTrie:
        """Move the levels to ``device`` in place (they are read on the device beam search runs on)."""
        self.levels = [level.to(device) for level in self.levels]
        return self

    def walk(self, tokens: torch.LongTensor) -> torch.LongTensor:
        """Node ids (...,) reached by the vocabulary ids ``tokens`` (..., t); -1 once off the trie."""
        node = torch.zeros(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
        for level in range(tokens.size(-1)):
            code = tokens[..., level] - self.token_offsets[level]
            valid = (node >= 0) & (code >= 0) & (code < self.codebook_size)
            step = self.levels[level].child(node.clamp_min(0), code.clamp(0, self.codebook_size - 1))
            node = torch.where(valid, step, torch.full_like(node, -1))
        return node
