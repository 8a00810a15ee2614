"""scripts/compare_published.py: our runs beside the published table, matched by the fraction frozen."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_published.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_published", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cells_pair_k_of_6_with_2k_of_12_and_read_max_accuracy(tmp_path, capsys):
    def run(freeze, seed, best, status="ok"):
        return dict(status=status, dataset="cola", train_size=100, freeze=freeze, seed=seed,
                    accuracy=0.5, max_accuracy=best)  # fmt: skip

    runs = write_csv(tmp_path / "runs.csv", [run("4", 0, 0.70), run("4", 1, 0.80), run("4", 2, 0.1, "failed"),
                                              run("0", 0, 0.60)])  # fmt: skip
    published = write_csv(tmp_path / "published.csv", [
        dict(dataset="cola", train_size=100, frozen_layers=8, mean=0.9),
        dict(dataset="cola", train_size=100, frozen_layers=4, mean=0.1),  # 4 of 12 pairs with our 2, not 4
        dict(dataset="sst2", train_size=100, frozen_layers=0, mean=0.2),
    ])  # fmt: skip
    load_script().main([str(runs), "--published", str(published)])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 100 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["100", "— / —", "0.600 / —", "— / —", "— / 0.100", "0.750 / 0.900", "— / —", "— / —"]


def test_clear_errors(tmp_path):
    script = load_script()
    with pytest.raises(SystemExit, match="no such file"):
        script.main([str(tmp_path / "missing.csv")])
    old = write_csv(
        tmp_path / "old.csv", [dict(status="ok", dataset="sst2", train_size=50, freeze="0", accuracy=0.5)]
    )
    with pytest.raises(SystemExit, match="max_accuracy column .*--report-only"):
        script.main([str(old)])


def test_the_committed_published_table_is_complete():
    rows = load_script().read_rows(load_script().PUBLISHED)
    for dataset in ("sst2", "cola"):
        cells = {(int(r["train_size"]), r["frozen_layers"]) for r in rows if r["dataset"] == dataset}
        assert cells == {
            (n, k) for n in (50, 100, 200, 500, 1000) for k in ("-1", "0", "2", "4", "8", "10", "12")
        }
