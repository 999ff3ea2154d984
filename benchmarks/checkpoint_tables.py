"""The list of shipped checkpoints as a markdown table, for the README and docs pages.

``python benchmarks/quality.py render`` fills every ``<!-- checkpoints -->`` ... ``<!-- /checkpoints -->`` block
(``<!-- checkpoints:scientific-tiger,beauty-tiger -->`` for some, in that order) from ``checkpoints/<name>/``:
the numbers from each card's model-index, the run from its ``provenance.json`` (the harness row it was shipped
from), so no number of the list is typed by hand (``tests/test_checkpoints.py`` checks the card, the row and
the results file agree; ``tests/test_quality.py`` that the pages equal what this renders).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


def checkpoints_table(key: str = "", root: Path = CHECKPOINTS) -> str:
    """The checkpoints in ``root`` (all, or the comma-separated names of ``key``) as a table, then how each was made."""
    from sidrec.checkpoints import list_checkpoints  # the package's reader, so the list is what users get

    shipped = list_checkpoints(root)
    if key:
        by_name = {checkpoint.name: checkpoint for checkpoint in shipped}
        unknown = [name for name in key.split(",") if name not in by_name]
        if unknown:
            raise ValueError(f"<!-- checkpoints:{key} --> names {unknown}, not in {root} (shipped: {sorted(by_name)})")
        shipped = [by_name[name] for name in key.split(",")]
    if not shipped:
        return f"_No checkpoint shipped in `{root.relative_to(ROOT) if root.is_relative_to(ROOT) else root}` yet._"
    lines = [
        "| checkpoint | method | data (test users) | R@10 | N@10 | R@20 | size | harness row |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for checkpoint in shipped:
        metrics, row = checkpoint.metrics, checkpoint.row
        users = f"{checkpoint.test_users:,}" if checkpoint.test_users else "?"
        lines.append(
            f"| `{checkpoint.name}` | {row['method']} | {checkpoint.provenance['dataset']} ({users}) | "
            f"{metrics['recall@10']:.4f} | {metrics['ndcg@10']:.4f} | {metrics['recall@20']:.4f} | "
            f"{checkpoint.size_bytes / 2**20:.1f} MB | `{row['id']}` |"
        )
    lines.append("")
    for checkpoint in shipped:
        row = checkpoint.row
        lines.append(
            f"- `{checkpoint.name}`: `{checkpoint.provenance['commands']['harness']}` ({row['machine']}, commit "
            f"{row['commit']}, {row['date']}; {row['epochs']:g} epochs in {row['train_seconds'] / 60:.1f} min)."
        )
    return "\n".join(lines)
