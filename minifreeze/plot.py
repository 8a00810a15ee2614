"""Plot a run: `python -m minifreeze.plot DIR [--out FILE.png]`.

Two panels against optimizer steps: the loss (train loss from DIR/train_log.jsonl, or the train loss
metrics.jsonl records at each evaluation when the run logged no train_log, and the validation loss), and
the validation metric that picked the best model, the best evaluation marked. matplotlib is optional: without
it the command says how to install it and exits 2, as the sweep's report does.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from . import cli
from .errors import MinifreezeError
from .runlog import TRAIN_LOG

NO_MATPLOTLIB = "matplotlib is not installed: pip install matplotlib (the numbers are in {run}/*.jsonl)"


@dataclass(frozen=True)
class PlotConfig:
    run: list[str] = cli.option(
        [], "the run folder (the --out of python -m minifreeze.train)", positional=True
    )
    out: str | None = cli.option(None, "PNG file to write (default: DIR/plot.png)")


def read_records(path: Path) -> list[dict]:
    """The JSON lines of `path` (none if it is absent); a line a killed run cut short is skipped."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            with suppress(ValueError, TypeError):
                record = json.loads(line)
                records.append(record if isinstance(record, dict) and "step" in record else None)
    return [r for r in records if r is not None]


def run_metric(run: Path) -> str:
    """The metric that picked the best model: the summary's, else the saved options', else accuracy."""
    for name in ("summary.json", "config.json"):
        with suppress(OSError, ValueError, AttributeError):
            return json.loads((run / name).read_text())["metric"]
    return "accuracy"


def pyplot(run: Path):
    try:
        import matplotlib
    except ImportError:
        raise MinifreezeError(NO_MATPLOTLIB.format(run=run)) from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_run(run: Path, out: Path) -> Path:
    """Draw `run`'s curves into the PNG `out`; refuses a folder that holds no run."""
    if not run.is_dir():
        raise MinifreezeError(f"{run}: no such folder; give the --out folder of a training run")
    train, evals = read_records(run / TRAIN_LOG), read_records(run / "metrics.jsonl")
    if not (train or evals):
        raise MinifreezeError(
            f"{run} is not a training run folder (no records in {TRAIN_LOG} or metrics.jsonl): give the --out "
            "folder of python -m minifreeze.train"
        )
    metric = run_metric(run)
    plt = pyplot(run)
    fig, (losses, scores) = plt.subplots(1, 2, figsize=(11, 4))
    source = train if train else evals  # no train_log (--log-every 0): the loss at each evaluation
    label = "train loss" + ("" if train else " (at evaluations)")
    losses.plot([r["step"] for r in source], [r["train_loss"] for r in source], label=label, lw=1)
    if evals:
        steps = [r["step"] for r in evals]
        losses.plot(steps, [r["loss"] for r in evals], "o-", label="validation loss")
        values = [r.get(metric) for r in evals]
        scores.plot(steps, values, "o-", color="tab:green", label=f"validation {metric}")
        best = max(range(len(values)), key=lambda i: values[i] if values[i] is not None else float("-inf"))
        scores.plot([steps[best]], [values[best]], "*", ms=14, color="tab:red", label="best")
    for ax, title in ((losses, "loss"), (scores, f"validation {metric}")):
        ax.set(xlabel="optimizer step", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(str(run))
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except OSError as err:
        raise MinifreezeError(f"cannot write {out}: {err.strerror or err}; choose another --out") from None
    finally:
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    cfg = cli.parse(PlotConfig, argv, "python -m minifreeze.plot", __doc__.splitlines()[0])
    if len(cfg.run) != 1:
        raise MinifreezeError(f"pass one run folder, not {' '.join(cfg.run) or 'nothing'}")
    run = Path(cfg.run[0]).expanduser()
    out = plot_run(run, Path(cfg.out).expanduser() if cfg.out else run / "plot.png")
    print(f"wrote {out}")
    return out


def entry() -> None:
    """The console script minifreeze-plot: `main` as the command line runs it."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
