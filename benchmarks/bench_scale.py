"""Trie memory and look-up speed at catalogue scale: the sparse layout against dense tables.

    python benchmarks/bench_scale.py --items 100000 1000000 --levels 4 --codebook-size 256

For each catalogue size, random unique codes (the worst case for sparsity: no two items share a
deep prefix by design) are turned into a ``PrefixTrie`` with ``layout="auto"`` (dense first levels,
CSR rows below); it prints the bytes held against what dense tables would need, the build time, and
the time of one beam-search step's look-up (``next_nodes`` for ``--rows`` prefixes, e.g. 256 users
x 20 beams) per level in both layouts, as a ratio measured in the same run. Dense tables are only
built where they fit in ``--dense-limit-gb``.
"""

from __future__ import annotations

import argparse
import time

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--rows", type=int, default=256 * 20)
    parser.add_argument("--dense-limit-gb", type=float, default=1.0)
    args = parser.parse_args()
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
