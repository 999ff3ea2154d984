"""``SemanticIDTokenizer``: item histories <-> semantic-ID token ids.

A ``PreTrainedTokenizer`` so that it saves, loads (``AutoTokenizer``) and travels to the Hub with
the model. Its vocabulary is fully determined by the number of levels and the codebook size:
special tokens, then one block of level-specific code tokens per level (``<a_0>..<a_255>``,
``<b_0>..``), then optional hashed user tokens (``<u_0>..``). What it learns is the item -> code
table, saved as safetensors so that ``from_pretrained`` restores exactly the same codes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import BatchEncoding, PreTrainedTokenizer

from .configuration_quantizer import SemanticIDQuantizerConfig
from .modeling_quantizer import SemanticIDQuantizer
from .prefix_trie import PrefixTrie

VOCAB_FILES_NAMES = {
    "item_codes_file": "item_codes.safetensors",
    "quantizer_file": "quantizer.safetensors",
    "items_file": "items.jsonl",  # raw item ids and titles by item index: every stock save and push keeps them
}
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
_TOKEN_PATTERN = re.compile(r"<[^<>\s]+>|\S+")


def level_name(level: int) -> str:
    """``a``, ``b``, ... ``z``, then ``l26``, ``l27`` ... for very deep codes."""
    return string.ascii_lowercase[level] if level < 26 else f"l{level}"


class SemanticIDTokenizer(PreTrainedTokenizer):
    """Tokenizer for generative recommendation with semantic IDs.

    Args:
        item_codes_file: safetensors file holding the ``codes`` (N, L) tensor (written by
            ``save_pretrained``).
        item_codes: the (N, L) code table itself, when building a new tokenizer.
        quantizer_file: safetensors file with the RQ-VAE's weights and its config in the metadata
            (written by ``save_pretrained`` when the tokenizer owns a quantizer).
        quantizer: the ``SemanticIDQuantizer`` that produced the codes. Optional for decoding; a
            trainable tokenizer (DIGER) owns it so that it is saved, loaded and pushed with the codes.
        num_levels: L, code length including the collision level.
        codebook_size: K, codes per level.
        num_user_buckets: hashed user-id tokens prepended to histories (TIGER uses 2,000); 0 = none.
        max_history: histories longer than this keep their most recent ``max_history`` items.
        items_file: ``items.jsonl`` (one ``{"index", "item_id", "title"}`` object a line), written by
            ``save_pretrained`` when the tokenizer knows its catalogue's raw ids.
        item_ids: the raw item id (a string) of every item index, when building a new tokenizer; with
            ``item_titles`` they make the tokenizer speak the data set's ids wherever it is saved or pushed.
        item_titles: the title of every item index (``""`` where there is none).
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        item_codes_file: str | None = None,
        item_codes: torch.Tensor | None = None,
        quantizer_file: str | None = None,
        quantizer: SemanticIDQuantizer | None = None,
        num_levels: int = 4,
        codebook_size: int = 256,
        num_user_buckets: int = 0,
        max_history: int = 20,
        items_file: str | None = None,
        item_ids: list[str] | None = None,
        item_titles: list[str] | None = None,
        pad_token: str = "<pad>",
        eos_token: str = "</s>",
        unk_token: str = "<unk>",
        **kwargs,
    ):
        if item_codes is None and item_codes_file is not None:
            item_codes = load_file(item_codes_file)["codes"]
        if item_codes is None:
            raise ValueError(
                "SemanticIDTokenizer needs its item code table: pass item_codes=(N, L) tensor, or load a "
                "saved tokenizer with SemanticIDTokenizer.from_pretrained(directory)."
            )
        if quantizer is None and quantizer_file is not None:
            quantizer = load_quantizer(quantizer_file)
        self.quantizer = quantizer
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.num_user_buckets = num_user_buckets
        self.max_history = max_history
        self._vocab = self._build_vocab()
        self._ids_to_tokens = {i: t for t, i in self._vocab.items()}
        self._trie: PrefixTrie | None = None
        self.set_item_codes(item_codes)
        if item_ids is None and items_file is not None:
            item_ids, item_titles = read_items_file(items_file)
        self.set_item_table(item_ids, item_titles)
        super().__init__(
            pad_token=pad_token,
            eos_token=eos_token,
            unk_token=unk_token,
            num_levels=num_levels,
            codebook_size=codebook_size,
            num_user_buckets=num_user_buckets,
            max_history=max_history,
            **kwargs,
        )

    # ----- vocabulary -----------------------------------------------------------------------------
    def _build_vocab(self) -> dict[str, int]:
        tokens = list(SPECIAL_TOKENS)
        for level in range(self.num_levels):
            tokens += [f"<{level_name(level)}_{code}>" for code in range(self.codebook_size)]
        tokens += [f"<u_{bucket}>" for bucket in range(self.num_user_buckets)]
        return {token: index for index, token in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    @property
    def code_offset(self) -> int:
        """Token id of code 0 at level 0."""
        return len(SPECIAL_TOKENS)

    @property
    def token_offsets(self) -> list[int]:
        """Token id of code 0 at each level."""
        return [self.code_offset + level * self.codebook_size for level in range(self.num_levels)]

    @property
    def user_offset(self) -> int:
        return self.code_offset + self.num_levels * self.codebook_size

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return _TOKEN_PATTERN.findall(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self._vocab.get(token, self._vocab[str(self.unk_token)])

    def _convert_id_to_token(self, index: int) -> str:
        return self._ids_to_tokens.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write the code table; the token vocabulary itself follows from the init arguments."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"save_directory {save_directory!r} must be an existing directory")
        prefix = filename_prefix + "-" if filename_prefix else ""
        path = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["item_codes_file"])
        save_file({"codes": self.item_codes.contiguous()}, path, metadata={"fingerprint": self.code_fingerprint})
        written = [path]
        if self.quantizer is not None:
            written.append(os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["quantizer_file"]))
            save_quantizer(self.quantizer, written[-1])
        if self.item_ids is not None:
            written.append(os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["items_file"]))
            write_items_file(written[-1], self.item_ids, self.item_titles)
        return tuple(written)

    # ----- raw item ids -----------------------------------------------------------------------------
    def set_item_table(self, item_ids: list[str] | None, item_titles: list[str] | None = None) -> None:
        """Attach the raw id (and title) of every item index; ``None`` leaves the tokenizer speaking indices."""
        if item_ids is None:
            self.item_ids, self.item_titles = None, None
            return
        item_ids = [str(raw) for raw in item_ids]
        if len(item_ids) != self.num_items:
            raise ValueError(
                f"{VOCAB_FILES_NAMES['items_file']} lists {len(item_ids)} items but the tokenizer's code table "
                f"({VOCAB_FILES_NAMES['item_codes_file']}) holds {self.num_items}: one of them was edited or comes "
                "from another run"
            )
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("the item table repeats a raw item id; each item index needs its own id")
        titles = [""] * len(item_ids) if item_titles is None else [title or "" for title in item_titles]
        if len(titles) != len(item_ids):
            raise ValueError(f"got {len(titles)} titles for {len(item_ids)} item ids")
        self.item_ids, self.item_titles = item_ids, titles

    @property
    def code_fingerprint(self) -> str:
        """A short hash of the code table: saved in the model's config, so codes and weights cannot be mixed up."""
        if self._fingerprint is None:  # hashed once per code table, not on every request
            self._fingerprint = code_table_fingerprint(self.item_codes)
        return self._fingerprint

    # ----- item codes -----------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return self.item_codes.size(0)

    def set_item_codes(self, item_codes: torch.Tensor) -> None:
        """Replace the catalogue's code table (e.g. after DIGER re-assigns codes) and rebuild the trie."""
        item_codes = torch.as_tensor(item_codes, dtype=torch.long).cpu()
        if item_codes.dim() != 2 or item_codes.size(1) != self.num_levels:
            raise ValueError(
                f"item_codes must have shape (num_items, {self.num_levels}), got {tuple(item_codes.shape)}"
            )
        if self.codebook_size**self.num_levels > 2**63 - 1:  # one int64 key per code: K ** L must fit
            raise ValueError(
                f"codes of {self.num_levels} levels of {self.codebook_size} do not fit one 64-bit key "
                f"({self.codebook_size}^{self.num_levels} > 2^63); use fewer levels or a smaller codebook_size"
            )
        self.item_codes = item_codes
        self._fingerprint = None
        self._trie = PrefixTrie(item_codes, self.codebook_size, self.token_offsets)
        radix = torch.tensor([self.codebook_size**p for p in range(self.num_levels - 1, -1, -1)])
        keys = (item_codes * radix).sum(dim=1)
        self._code_keys, self._code_key_items = torch.sort(keys)
        self._radix = radix

    @property
    def trie(self) -> PrefixTrie:
        """The prefix trie of valid codes (rebuilt by :meth:`set_item_codes`)."""
        return self._trie

    def check_items(self, item_ids: torch.Tensor) -> None:
        """Raise a clear error for item indices outside the catalogue."""
        bad = (item_ids < 0) | (item_ids >= self.num_items)
        if bad.any():
            raise ValueError(
                f"Unknown item id {int(item_ids[bad][0])}: this tokenizer's catalogue holds items "
                f"0..{self.num_items - 1}. Map raw ids to item indices with the data set's item table."
            )

    def item_token_ids(self, item_ids: torch.Tensor) -> torch.LongTensor:
        """Token ids (..., L) of the codes of item indices (...)."""
        item_ids = torch.as_tensor(item_ids, dtype=torch.long)
        self.check_items(item_ids)
        offsets = torch.tensor(self.token_offsets)
        return self.item_codes[item_ids] + offsets

    def items_from_token_ids(self, token_ids: torch.Tensor) -> torch.LongTensor:
        """Item indices (...) for code token ids (..., L); -1 where the code is no item's."""
        token_ids = torch.as_tensor(token_ids, dtype=torch.long)
        codes = token_ids - torch.tensor(self.token_offsets)
        in_range = ((codes >= 0) & (codes < self.codebook_size)).all(dim=-1)
        keys = (codes.clamp(0, self.codebook_size - 1) * self._radix).sum(dim=-1)
        position = torch.searchsorted(self._code_keys, keys).clamp_max(self.num_items - 1)
        found = in_range & (self._code_keys[position] == keys)
        return torch.where(found, self._code_key_items[position], torch.full_like(keys, -1))

    def user_token_id(self, user_ids: torch.Tensor) -> torch.LongTensor:
        """Hashed user-token ids: ``user_offset + user_id mod num_user_buckets``."""
        return self.user_offset + torch.as_tensor(user_ids, dtype=torch.long) % self.num_user_buckets

    # ----- batch encoding -------------------------------------------------------------------------
    def encode_histories(
        self,
        histories: list[list[int]],
        users: list[int] | None = None,
        return_tensors: str = "pt",
        return_item_index: bool = False,
    ) -> BatchEncoding:
        """Encode item-index histories as right-padded ``input_ids`` and ``attention_mask``.

        Each history becomes ``[<user>] codes(item_1) ... codes(item_n) </s>``. Histories longer
        than ``max_history`` keep their most recent ``max_history`` items (the training protocol).
        With ``return_item_index``, ``item_index`` (B, S) holds the item behind each code token and
        -1 elsewhere, so that joint training (DIGER) can put freshly assigned codes in their place.

        Raises:
            ValueError: an empty history (a generative recommender needs at least one item; use a
                popularity fallback for cold users) or an unknown item index.
        """
        if return_tensors != "pt":
            raise ValueError("encode_histories returns PyTorch tensors only (return_tensors='pt')")
        if len(histories) == 0:
            raise ValueError("encode_histories got no histories")
        lengths = [len(h) for h in histories]
        if min(lengths) == 0:
            row = lengths.index(0)
            raise ValueError(
                f"History {row} is empty: a user needs at least one interacted item to get "
                "recommendations. Fall back to the popularity ranking for cold-start users."
            )
        kept = [list(h)[-self.max_history :] for h in histories]
        lengths = [len(h) for h in kept]
        longest = max(lengths)
        padded = torch.tensor([h + [0] * (longest - len(h)) for h in kept], dtype=torch.long)
        item_mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
        self.check_items(padded[item_mask])
        tokens = self.item_token_ids(padded).flatten(1)  # (B, longest * L)
        token_mask = item_mask.repeat_interleave(self.num_levels, dim=1)
        items = padded.repeat_interleave(self.num_levels, dim=1)
        eos = torch.full((len(kept), 1), self.eos_token_id)
        no_item = torch.full_like(eos, -1)
        pieces, masks = [tokens, eos], [token_mask, torch.ones_like(eos, dtype=torch.bool)]
        item_pieces = [items, no_item]
        if self.num_user_buckets and users is not None:
            pieces.insert(0, self.user_token_id(users)[:, None])
            masks.insert(0, torch.ones((len(kept), 1), dtype=torch.bool))
            item_pieces.insert(0, no_item)
        input_ids = torch.cat(pieces, dim=1)
        mask = torch.cat(masks, dim=1)
        # Move the eos token right after each history's last code so padding stays at the end.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        encoded = {
            "input_ids": torch.where(mask, input_ids, self.pad_token_id).gather(1, order),
            "attention_mask": mask.gather(1, order).long(),
        }
        if return_item_index:
            encoded["item_index"] = torch.where(mask, torch.cat(item_pieces, dim=1), -1).gather(1, order)
        return BatchEncoding(encoded)

    def encode_targets(self, item_ids: list[int] | torch.Tensor) -> torch.LongTensor:
        """Decoder labels (B, L): the code tokens of each target item."""
        return self.item_token_ids(torch.as_tensor(item_ids, dtype=torch.long))


def save_quantizer(quantizer: SemanticIDQuantizer, path: str) -> None:
    """One safetensors file: the RQ-VAE's weights, with its config as JSON in the metadata."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in quantizer.state_dict().items()}
    save_file(state, path, metadata={"config": quantizer.config.to_json_string(use_diff=False)})


def load_quantizer(path: str) -> SemanticIDQuantizer:
    """The quantizer written by :func:`save_quantizer`, in eval mode."""
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path} has no quantizer config in its metadata; it was not written by save_quantizer")
    config = SemanticIDQuantizerConfig(**json.loads(metadata["config"]))
    quantizer = SemanticIDQuantizer(config)
    quantizer.load_state_dict(load_file(path))
    return quantizer.eval()


def code_table_fingerprint(item_codes: torch.Tensor) -> str:
    """The first 16 hex digits of SHA-256 over the code table's shape and values (int64, row-major)."""
    codes = torch.as_tensor(item_codes, dtype=torch.long).contiguous().cpu()
    digest = hashlib.sha256(str(tuple(codes.shape)).encode())
    digest.update(codes.numpy().tobytes())
    return digest.hexdigest()[:16]


def write_items_file(path: str, item_ids: list[str], titles: list[str]) -> None:
    """``items.jsonl``: one ``{"index", "item_id", "title"}`` object a line, by item index."""
    with open(path, "w") as handle:
        for index, (raw_id, title) in enumerate(zip(item_ids, titles)):
            handle.write(json.dumps({"index": index, "item_id": raw_id, "title": title}) + "\n")


def read_items_file(path: str) -> tuple[list[str], list[str]]:
    """(raw ids, titles) by item index from :func:`write_items_file`'s file; a damaged line names itself."""
    ids, titles = [], []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or "item_id" not in row or row.get("index") != len(ids):
                raise ValueError(
                    f'{path} line {number} is not a row like {{"index": {len(ids)}, "item_id": ...}}: {line[:80]!r}. '
                    "The file was edited or truncated; copy it again from the run's model directory"
                )
            ids.append(str(row["item_id"]))
            titles.append(row.get("title") or "")
    return ids, titles
