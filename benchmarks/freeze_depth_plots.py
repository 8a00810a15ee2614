"""The two plots of a freeze_depth.py result: samples/s and activation memory against the frozen depth.

Drawn after a run, or again from a result's .jsonl (`python benchmarks/freeze_depth.py --replot FILE`, e.g.
after changing the style). matplotlib is optional: without it the plots are skipped with a note.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from benchmarks.common import MB

MODE_TITLES = {
    "nograd": "minifreeze (no_grad prefix)",
    "requires_grad": "minifreeze (requires_grad only)",
    "peer": "transformers (requires_grad)",
    "train_emb": "minifreeze, trainable embeddings",
}
PLOT_STYLES = {
    "nograd": dict(marker="o", markersize=8, linewidth=2.5),
    "requires_grad": dict(marker="s", markersize=6, linewidth=1.8, linestyle="--"),
    "peer": dict(marker="^", markersize=5, linewidth=1.3, linestyle=":"),
    "train_emb": dict(marker="D", markersize=5, linewidth=1.5),
}


def row_depth(row: str, num_layers: int) -> float | None:
    """Where a row sits on the depth axis of the plots: k for depth k, 0.5 for -1 (embeddings only)."""
    if re.fullmatch(r"\d+", row):
        return int(row)
    return {"-1": 0.5, "head": num_layers + 1}.get(row)


def plot(results: list[dict], num_layers: int, folder: Path, name: str, title: str) -> list[Path]:
    """samples/s vs depth and activation MB vs depth, one line per mode (bitfit: a cross)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    paths = []
    for key, ylabel, scale, suffix in (
        ("samples_per_s", "samples / s (higher is better)", 1.0, "samples_per_s"),
        ("saved_bytes", "activations saved for backward (MiB)", MB, "activation_mb"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for mode in dict.fromkeys(r["mode"] for r in results):
            mine = [r for r in results if r["mode"] == mode]
            on_axis = [(row_depth(r["row"], num_layers), r[key] / scale) for r in mine]
            points = sorted(p for p in on_axis if p[0] is not None)
            # Modes often coincide (saved bytes of nograd, requires_grad and the peer are equal with frozen
            # embeddings): distinct markers, widths and dashes keep every line visible.
            line = (
                ax.plot(*zip(*points), label=MODE_TITLES.get(mode, mode), **PLOT_STYLES.get(mode, {}))
                if points
                else None
            )
            for r in (r for r in mine if r["row"] == "bitfit"):
                ax.scatter(
                    [num_layers + 2],
                    [r[key] / scale],
                    marker="x",
                    color=line[0].get_color() if line else None,
                )
        ticks = list(range(num_layers + 1)) + [0.5, num_layers + 1, num_layers + 2]
        ax.set_xticks(ticks, [str(k) for k in range(num_layers + 1)] + ["emb", "head", "bitfit"])
        ax.set_xlabel("frozen layers k (emb = embeddings only; head = all but the head; x = bitfit)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(folder / f"{name}_{suffix}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def replot(jsonl: str) -> int:
    """Redraw the plots of a result from its .jsonl (e.g. after changing the plot style)."""
    path = Path(jsonl)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    run = next(r for r in records if r["kind"] == "run")
    results = [r for r in records if r["kind"] == "row"]
    variant = f"{run['dtype']} {'torch.compile' if run['compile'] else 'eager'}, {run['device']}"
    title = f"{run['model']} {run['batch_size']}x{run['seq_len']} {variant}, {run['threads']} threads"
    for written in plot(results, run["num_layers"], path.parent, path.stem, title):
        print(f"plot: {written}", file=sys.stderr)
    return 0
