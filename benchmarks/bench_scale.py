"""The catalogue at scale: trie memory and look-up speed, and every pipeline stage's time and memory.

    python benchmarks/bench_scale.py --items 100000 1000000 --levels 4 --codebook-size 256
    python benchmarks/bench_scale.py --pipeline --items 100000 1000000 10000000

``--pipeline`` runs each catalogue size in its own process (so each has its own peak memory) on
synthetic data of N items, N users and 10 N interactions, written as Parquet: reading and splitting
the interactions, the training counts, embedding item texts (MiniLM on a sample of texts, reported as
a rate: it is linear in N), fitting the RQ-VAE on a sample and coding every item, building the
tokenizer and its trie, encoding test histories and ``recommend`` with a demo-size SID-T5. Each stage
prints its seconds and the process's peak resident memory after it. Embeddings larger than
``--max-embedding-gb`` are written as shard files and read on demand (``EmbeddingShards``, as
``embed_texts(keep_shards=True)`` returns them), so the RQ-VAE stage runs at every size.

Trie mode:
For each catalogue size, random unique codes (the worst case for sparsity: no two items share a
deep prefix by design) are turned into a ``PrefixTrie`` with ``layout="auto"`` (dense first levels,
CSR rows below); it prints the bytes held against what dense tables would need, the build time, and
the time of one beam-search step's look-up (``next_nodes`` for ``--rows`` prefixes, e.g. 256 users
x 20 beams) per level in both layouts, as a ratio measured in the same run. Dense tables are only
built where they fit in ``--dense-limit-gb``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_train import SIZES  # noqa: E402  (a sibling script: the same model shapes)
from speed_tables import pipeline_table  # noqa: E402

from sidrec.tokenization.prefix_trie import PrefixTrie


def timed(function, repeats: int = 5) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def dense_bytes(codes: torch.LongTensor, codebook_size: int) -> int:
    prefixes = [1] + [len(torch.unique(codes[:, : n + 1], dim=0)) for n in range(codes.size(1) - 1)]
    return sum(8 * codebook_size * count for count in prefixes)


def peak_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_synthetic(directory: Path, items: int, seed: int = 0) -> None:
    """N users with 10 interactions each over N items (Zipf-like popularity), as Parquet tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(items, dtype=np.int64), 10)
    popularity = rng.zipf(1.2, size=len(users)) % items  # a long tail, as in real catalogues
    chosen = (popularity + rng.integers(0, items, size=len(users)) * (rng.random(len(users)) < 0.5)) % items
    table = pa.table({"user_id": users, "item_id": chosen, "position": np.tile(np.arange(10), items)})
    pq.write_table(table, directory / "interactions.parquet")
    titles = pa.array([f"synthetic item {i}" for i in range(items)])
    pq.write_table(
        pa.table({"item_id": np.arange(items, dtype=np.int64), "title": titles}), directory / "items.parquet"
    )


def write_random_shards(folder: Path, items: int, rows: int = 1_000_000):
    """Random 384-d embeddings for ``items`` items as safetensors shards, returned as ``EmbeddingShards``."""
    from safetensors.torch import save_file

    from sidrec.training.embeddings import EmbeddingShards

    generator, paths = torch.Generator().manual_seed(0), []
    for number, start in enumerate(range(0, items, rows)):
        paths.append(folder / f"shard-{number:05d}.safetensors")
        save_file({"embeddings": torch.randn(min(rows, items - start), 384, generator=generator)}, str(paths[-1]))
    return EmbeddingShards(paths)


class Stages:
    """Times each stage and records the peak memory after it."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, function, note: str = ""):
        started = time.perf_counter()
        value = function()
        row = {"stage": name, "seconds": round(time.perf_counter() - started, 2), "peak_mb": round(peak_mb())}
        if note:
            row["note"] = note
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return value


def load_text_encoder():
    """The packaged MiniLM, as the embedding stage loads it."""
    from sentence_transformers import SentenceTransformer

    from sidrec.training.embeddings import resolve_text_model

    return SentenceTransformer(resolve_text_model(None), device="cpu", local_files_only=True)


def pipeline_one(items: int, fit_sample: int, embed_sample: int, users: int, max_embedding_gb: float) -> dict:
    """Every stage on one synthetic catalogue of ``items`` items; returns the stage rows."""
    from sidrec import SemanticIDTokenizer, SIDT5Config, SIDT5ForConditionalGeneration
    from sidrec.tokenization.configuration_quantizer import SemanticIDQuantizerConfig
    from sidrec.training.data.config import DataConfig
    from sidrec.training.data.sequences import load_sequential_data
    from sidrec.training.fit_quantizer import fit_quantizer

    stages = Stages()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        stages.run("write synthetic Parquet (setup)", lambda: write_synthetic(directory, items))
        # The synthetic users draw items with replacement: every row is kept, as the committed scale results
        # were measured (the readers' default drops repeated (user, item) rows).
        config = DataConfig(
            path=str(directory),
            min_user_interactions=3,
            min_item_interactions=0,
            text_fields=["title"],
            deduplicate=False,
        )
        data = stages.run("read, index and split interactions", lambda: load_sequential_data(config, verbose=False))
    stages.run("training counts (popularity)", data.train_item_counts)
    sample = data.item_texts[: min(embed_sample, data.num_items)]
    encoder = stages.run("load MiniLM", lambda: load_text_encoder())
    stages.run("embed a sample of item texts (MiniLM)", lambda: encoder.encode(sample, batch_size=64))
    rate = len(sample) / max(stages.rows[-1]["seconds"], 1e-9)
    stages.rows[-1]["note"] = (
        f"{len(sample):,} texts at {rate:.0f} texts/s: {data.num_items / rate / 3600:.2f} h for all {data.num_items:,}"
    )
    gigabytes = data.num_items * 384 * 4 / 2**30
    # 3 levels of 256 (16.7M IDs) left 1,189 of 10M random items on one ID, past the 256 codes of the
    # collision level, so catalogues above 2M items get a fourth level.
    levels = 3 if data.num_items <= 2_000_000 else 4
    quantizer = SemanticIDQuantizerConfig(input_dim=384, hidden_dims=[512, 256, 128], latent_dim=32, num_levels=levels)
    with tempfile.TemporaryDirectory() as shard_folder:
        if gigabytes <= max_embedding_gb:
            embeddings = stages.run(
                "random 384-d item embeddings (setup)",
                lambda: torch.randn(data.num_items, 384, generator=torch.Generator().manual_seed(0)),
            )
        else:  # as ``embed_texts(keep_shards=True)`` leaves them: shard files read on demand
            embeddings = stages.run(
                "random 384-d item embeddings, written as 1M-row shards (setup)",
                lambda: write_random_shards(Path(shard_folder), data.num_items),
                note=f"{gigabytes:.1f} GB of float32 embeddings (over --max-embedding-gb) left on disk",
            )
        codes = stages.run(
            "RQ-VAE: fit on a sample (5 epochs), code every item",
            lambda: fit_quantizer(embeddings, quantizer, epochs=5, fit_sample=fit_sample).codes,
            note=f"fitted on {min(fit_sample, data.num_items):,} items, {levels} levels of 256 + collision level",
        )
        embeddings = None  # free the catalogue's embeddings before the next stages
    tokenizer = stages.run(
        "tokenizer and trie",
        lambda: SemanticIDTokenizer(item_codes=codes, num_levels=levels + 1, codebook_size=256, max_history=20),
    )
    histories = [list(h) for h in data.splits["test"].select(range(users))["history"]]
    stages.run("encode test histories", lambda: tokenizer.encode_histories(histories), note=f"{users:,} users")
    config = SIDT5Config(num_code_levels=levels + 1, codebook_size=256, **SIZES["demo"])
    model = SIDT5ForConditionalGeneration(config).eval()
    found = stages.run(
        "recommend top-10, beam 20 (demo-size model)",
        lambda: model.recommend(histories, tokenizer, top_k=10, num_beams=20),
        note=f"{users:,} users in one call",
    )
    assert bool(((found.items >= 0) & (found.items < data.num_items)).all()), "recommend returned an invalid item"
    return {
        "items": data.num_items,
        "users": data.num_users,
        "interactions": data.num_interactions,
        "trie_mb": round(tokenizer.trie.nbytes / 2**20, 1),
        "stages": stages.rows,
    }


def pipeline(args) -> None:
    """One process per catalogue size; prints a markdown table of stage x size."""
    results = []
    for count in args.items:
        command = [
            sys.executable,
            __file__,
            "--pipeline-one",
            str(count),
            "--fit-sample",
            str(args.fit_sample),
            "--embed-sample",
            str(args.embed_sample),
            "--users",
            str(args.users),
            "--max-embedding-gb",
            str(args.max_embedding_gb),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{count:,} items failed:\n{done.stderr[-3000:]}", flush=True)
            results.append({"items": count, "failed": done.stderr.strip().splitlines()[-1:]})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if any("stages" in result for result in results):
        print(pipeline_table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--rows", type=int, default=256 * 20)
    parser.add_argument("--dense-limit-gb", type=float, default=1.0)
    parser.add_argument("--pipeline", action="store_true", help="time every pipeline stage instead of the trie")
    parser.add_argument("--pipeline-one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fit-sample", type=int, default=100_000, help="items the RQ-VAE is fitted on")
    parser.add_argument("--embed-sample", type=int, default=2_000, help="texts MiniLM embeds to measure its rate")
    parser.add_argument("--users", type=int, default=256, help="test users encoded and recommended for")
    parser.add_argument(
        "--max-embedding-gb", type=float, default=6.0, help="above it the embeddings stay on disk (EmbeddingShards)"
    )
    parser.add_argument("--output", default=None, help="write the pipeline results JSON here")
    args = parser.parse_args()
    if args.pipeline_one is not None:
        print(
            json.dumps(
                pipeline_one(args.pipeline_one, args.fit_sample, args.embed_sample, args.users, args.max_embedding_gb)
            )
        )
        return
    if args.pipeline:
        pipeline(args)
        return
    generator = torch.Generator().manual_seed(0)
    size = args.codebook_size
    offsets = [3 + size * level for level in range(args.levels)]
    print("| items | layouts | trie MB | dense MB | build s | look-up ms sparse/dense per level |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for count in args.items:
        codes = torch.unique(torch.randint(0, size, (count, args.levels), generator=generator), dim=0)
        started = time.perf_counter()
        trie = PrefixTrie(codes, size, offsets)
        build = time.perf_counter() - started
        full = dense_bytes(codes, size)
        dense = PrefixTrie(codes, size, offsets, layout="dense") if full <= args.dense_limit_gb * 2**30 else None
        steps = []
        for level in range(args.levels):
            prefixes = len(torch.unique(codes[:, :level], dim=0)) if level else 1
            nodes = torch.randint(0, prefixes, (args.rows,), generator=generator)
            sparse_time = timed(lambda t=trie, n=nodes, lv=level: t.next_nodes(lv, n))
            cell = f"{1e3 * sparse_time:.2f}"
            if dense is not None:
                cell += f" / {1e3 * timed(lambda t=dense, n=nodes, lv=level: t.next_nodes(lv, n)):.2f}"
            steps.append(cell)
        print(
            f"| {len(codes):,} | {'/'.join(layout[0] for layout in trie.layouts)} | {trie.nbytes / 2**20:.1f} | "
            f"{full / 2**20:.1f} | {build:.1f} | {'; '.join(steps)} |"
        )


if __name__ == "__main__":
    main()
