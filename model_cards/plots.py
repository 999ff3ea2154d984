"""Training figures for a run: loss curves, validation NDCG, and how the semantic IDs evolved.

Read from ``Trainer.state.log_history`` (the same rows ``trainer_state.json`` keeps), so the plot can
be redrawn from any checkpoint. The code panels appear when the run logged ``codes/...`` rows (the
living-codes callback of joint DIGER training); the noise panel when it logged ``noise/...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _series(rows: list[dict[str, Any]], key: str, x: str) -> tuple[list[float], list[float]]:
    points = [(row[x], row[key]) for row in rows if key in row and x in row]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Save a PNG of the run's curves to ``path``; ``None`` when there is nothing to plot.

    Panels: training loss per objective (by step) and validation NDCG@10 (by epoch); then, when
    logged, per-level code usage, perplexity and collision rate (by epoch) and the noise figures.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({key for row in log_history for key in row})
    loss_keys = [k for k in keys if k == "loss" or k.startswith("loss_") or k == "recommendation_ce"]
    usage_keys = [k for k in keys if k.startswith("codes/level") and k.endswith("/usage")]
    perplexity_keys = [k for k in keys if k.startswith("codes/level") and k.endswith("/perplexity")]
    noise_keys = [k for k in keys if k.startswith("noise/") and "hot_codes" not in k]  # scales, not counts
    panels = [("loss", loss_keys, "step"), ("validation NDCG@10", ["eval_ndcg@10"], "epoch")]
    panels += [("code usage (fraction of codes used)", usage_keys, "epoch")]
    panels += [("code perplexity", perplexity_keys, "epoch"), ("collision rate", ["codes/collision_rate"], "epoch")]
    churn_keys = [k for k in keys if k.startswith(("codes/churn/", "codes/churn_from_start/")) and "level" in k]
    panels += [("code churn (share of items whose code moved)", churn_keys, "epoch")]
    panels += [("noise", noise_keys, "step")]
    panels = [p for p in panels if any(_series(log_history, k, p[2])[0] for k in p[1])]
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (name, panel_keys, x) in zip(axes.flat, panels):
        for key in panel_keys:
            xs, ys = _series(log_history, key, x)
            if xs:
                axis.plot(xs, ys, marker="o" if x == "epoch" else None, markersize=3, label=key.split("/", 1)[-1])
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(x)
        if len(panel_keys) > 1 or name == "noise":
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
