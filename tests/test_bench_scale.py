"""bench_scale.py's pipeline mode on a small synthetic catalogue: every stage runs and is reported, so
the scale benchmark is known to work before it is pointed at 10M items."""

from __future__ import annotations

from .conftest import load_benchmark_script

bench_scale = load_benchmark_script("bench_scale")


def test_pipeline_stages_on_a_small_catalogue():
    result = bench_scale.pipeline_one(3000, fit_sample=1000, embed_sample=32, users=16, max_embedding_gb=1.0)
    stages = [row["stage"] for row in result["stages"]]
    for expected in (
        "read, index and split interactions",
        "training counts (popularity)",
        "embed a sample of item texts (MiniLM)",
        "RQ-VAE: fit on a sample (5 epochs), code every item",
        "tokenizer and trie",
        "encode test histories",
        "recommend top-10, beam 20 (demo-size model)",
    ):
        assert expected in stages
    assert result["users"] == 3000 and result["interactions"] == 30000  # 10 interactions per synthetic user
    assert 0 < result["items"] <= 3000 and result["trie_mb"] > 0
    assert all(row["seconds"] >= 0 and row["peak_mb"] > 0 for row in result["stages"])
    fit = next(row for row in result["stages"] if row["stage"].startswith("RQ-VAE"))
    assert fit["note"] == "fitted on 1,000 items, 3 levels of 256 + collision level"


def test_pipeline_codes_from_shards_on_disk_above_the_memory_limit():
    """Above ``--max-embedding-gb`` the embeddings are shard files read on demand, and every item is coded."""
    result = bench_scale.pipeline_one(2000, fit_sample=1000, embed_sample=8, users=8, max_embedding_gb=0.0)
    stages = {row["stage"]: row for row in result["stages"]}
    written = stages["random 384-d item embeddings, written as 1M-row shards (setup)"]
    assert "left on disk" in written["note"]
    fit = stages["RQ-VAE: fit on a sample (5 epochs), code every item"]
    assert fit["note"] == "fitted on 1,000 items, 3 levels of 256 + collision level"
    assert "random 384-d item embeddings (setup)" not in stages and result["trie_mb"] > 0
