"""A vectorised prefix-trie ``LogitsProcessor`` for the stock ``generate``.

It restricts every beam to codes that extend a real item's semantic ID, with one table look-up per
level for all beams together. It works with ``model.generate(num_beams=...)`` unchanged, which is
what makes constrained decoding a drop-in for anyone using the Hugging Face API.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class PrefixTrieLogitsProcessor(LogitsProcessor):
    """Mask every token that would leave the trie of valid semantic IDs.

    Args:
        trie: the tokenizer's ``PrefixTrie``, or any object with its ``num_levels``, ``next_nodes(level,
            nodes) -> (nodes, K)`` (-1 = invalid), ``token_offsets``, ``codebook_size``, ``walk`` and ``to``.
            Duck-typed so that this file needs nothing beyond torch and transformers.
        prompt_length: decoder tokens before the first code (1: the decoder start token).
    """

    def __init__(self, trie, prompt_length: int = 1):
        self.trie = trie
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        trie = self.trie.to(input_ids.device)  # in place and free once the tables live there
        generated = input_ids[:, self.prompt_length :]
        step = generated.size(1)
        if step >= trie.num_levels:  # the code is complete: only end-of-sequence remains sensible
            return scores
        node = trie.walk(generated)  # (rows,), -1 once a row has left the trie
        allowed = (trie.next_nodes(step, node.clamp_min(0)) >= 0) & (node >= 0)[:, None]  # (rows, K)
        offset = trie.token_offsets[step]
        mask = torch.ones_like(scores, dtype=torch.bool)
        mask[:, offset : offset + trie.codebook_size] = ~allowed
        return scores.masked_fill(mask, -float("inf"))
