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
        trie: any object with ``children`` (list of (nodes, K) long tensors, -1 = invalid),
            ``token_offsets`` (token id of code 0 per level) and ``codebook_size``; the tokenizer's
            ``PrefixTrie``. Duck-typed so that this file needs nothing beyond torch and transformers.
        prompt_length: decoder tokens before the first code (1: the decoder start token).
    """

    def __init__(self, trie, prompt_length: int = 1):
        self.trie = trie
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        trie = self.trie
        generated = input_ids[:, self.prompt_length :]
        step = generated.size(1)
        if step >= len(trie.children):  # the code is complete: only end-of-sequence remains sensible
            return scores
        node = torch.zeros(input_ids.size(0), dtype=torch.long, device=input_ids.device)
        for level in range(step):
            code = generated[:, level] - trie.token_offsets[level]
            code = code.clamp(0, trie.codebook_size - 1)
            node = trie.children[level].to(input_ids.device)[node.clamp_min(0), code]
        table = trie.children[step].to(input_ids.device)
        allowed = table[node.clamp_min(0)] >= 0  # (rows, K)
        allowed &= (node >= 0)[:, None]
        offset = trie.token_offsets[step]
        mask = torch.ones_like(scores, dtype=torch.bool)
        mask[:, offset : offset + trie.codebook_size] = ~allowed
        return scores.masked_fill(mask, -float("inf"))
