"""scripts/compare_published.py (our runs beside the published table) and scripts/compare_followups.py."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from minifreeze import MinifreezeError

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    """A script from scripts/ as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script():
    return load("compare_published")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cells_pair_k_of_6_with_2k_of_12_and_read_max_accuracy(tmp_path, capsys):
    def run(freeze, seed, best, status="ok"):
        return dict(status=status, dataset="cola", train_size=100, freeze=freeze, seed=seed,
                    accuracy=0.5, max_accuracy=best, majority_baseline=0.5)  # fmt: skip

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
    with pytest.raises(MinifreezeError, match="no such file"):
        script.main([str(tmp_path / "missing.csv")])
    old = write_csv(
        tmp_path / "old.csv", [dict(status="ok", dataset="sst2", train_size=50, freeze="0", accuracy=0.5)]
    )
    with pytest.raises(MinifreezeError, match="no column 'max_accuracy', 'majority_baseline'.*--report-only"):
        script.main([str(old)])
    good = write_csv(tmp_path / "good.csv", [dict(status="ok", dataset="sst2", train_size=50, freeze="0", seed=0,
                                                  max_accuracy=0.5, majority_baseline=0.5)])  # fmt: skip
    with pytest.raises(MinifreezeError, match="missing.csv: no such file .*--published"):  # was a traceback
        script.main([str(good), "--published", str(tmp_path / "missing.csv")])


def test_the_committed_published_table_is_complete():
    rows = load_script().read_rows(load_script().PUBLISHED)
    for dataset in ("sst2", "cola"):
        cells = {(int(r["train_size"]), r["frozen_layers"]) for r in rows if r["dataset"] == dataset}
        assert cells == {
            (n, k) for n in (50, 100, 200, 500, 1000) for k in ("-1", "0", "2", "4", "8", "10", "12")
        }


def load_followups():
    return load("compare_followups")


def test_followups_pair_seeds_and_name_the_changed_option(tmp_path, capsys):
    def run(freeze, seed, best, lr="5e-05", status="ok"):
        return dict(status=status, dataset="sst2", train_size=100, freeze=freeze, seed=seed, lr=lr,
                    pooling="cls", max_accuracy=best)  # fmt: skip

    study = write_csv(
        tmp_path / "study.csv", [run(4, 0, 0.50), run(4, 1, 0.60), run(4, 2, 0.90), run(0, 0, 0.7)]
    )
    followup_dir = tmp_path / "lr5e-4"
    followup_dir.mkdir()
    followup = write_csv(followup_dir / "runs.csv", [run(4, 0, 0.70, "5e-4"), run(4, 1, 0.65, "5e-4"),
                                                      run(4, 2, 0.0, "5e-4", "failed")])  # fmt: skip
    load_followups().main([str(study), str(followup)])
    out = capsys.readouterr().out
    assert "**lr5e-4** (lr: 5e-05 -> 5e-4)" in out
    row = next(line for line in out.splitlines() if line.startswith("| 100 | 4 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # study mean over its 3 seeds; follow-up over its 2 finished ones; the difference pairs seeds 0 and 1 only
    assert cells == ["100", "4", "0.667", "0.675", "+0.125 (+0.050 to +0.200)", "2"]
    assert "| 100 | 0 " not in out  # only the follow-up's cells are listed


def test_followups_clear_errors(tmp_path):
    script = load_followups()
    with pytest.raises(MinifreezeError, match="no such file"):
        script.main([str(tmp_path / "missing.csv"), str(tmp_path / "other.csv")])
    failed = write_csv(tmp_path / "failed.csv", [dict(status="failed", train_size=50, freeze=0, seed=0)])
    with pytest.raises(MinifreezeError, match="no finished runs"):
        script.main([str(failed), str(failed)])
    ok = write_csv(tmp_path / "ok.csv", [dict(status="ok", train_size=50, freeze=0, seed=0, accuracy=0.5)])
    with pytest.raises(MinifreezeError, match="no column 'max_accuracy'"):
        script.main([str(ok), str(ok)])


def test_gain_kept_is_measured_from_the_majority_class_and_skips_a_depth_0_that_learned_nothing(
    tmp_path, capsys
):
    def run(size, freeze, best):
        return dict(status="ok", dataset="sst2", train_size=size, freeze=freeze, seed=0,
                    max_accuracy=best, majority_baseline=0.5)  # fmt: skip

    runs = write_csv(tmp_path / "runs.csv", [run(100, "0", 0.9), run(100, "4", 0.8), run(50, "0", 0.505),
                                              run(50, "4", 0.6)])  # fmt: skip
    published = write_csv(tmp_path / "published.csv", [
        dict(dataset="sst2", train_size=100, frozen_layers=0, mean=0.7),
        dict(dataset="sst2", train_size=100, frozen_layers=8, mean=0.4999),
    ])  # fmt: skip
    load_script().main([str(runs), "--published", str(published), "--gain"])
    out = capsys.readouterr().out.split("share of full fine-tuning's gain")[1]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| 5") or line.startswith("| 1")}  # fmt: skip
    assert rows["100"][4] == "75% / 0%"  # (0.8-0.5)/(0.9-0.5) ours; (0.4999-0.5)/(0.7-0.5) theirs, not "-0%"
    assert rows["50"][4] == "— / —"  # our depth 0 gained 0.005 over the majority: no meaningful share


def test_followups_with_named_freeze_specs_and_cells_in_depth_order(tmp_path, capsys):
    """Cells used to be keyed by int(freeze): a sweep over `head` or `top:2` ended in a ValueError."""

    def run(freeze, best):
        return dict(status="ok", train_size=100, freeze=freeze, seed=0, lr="5e-05", max_accuracy=best)

    study = write_csv(tmp_path / "study.csv", [run("head", 0.6), run("-1", 0.7), run("0", 0.8)])
    followup = write_csv(tmp_path / "f.csv", [run("head", 0.65), run("-1", 0.75), run("0", 0.9)])
    load_followups().main([str(study), str(followup)])
    rows = [
        line.split("|")[2].strip()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 100")
    ]
    assert rows == ["0", "-1", "head"]  # as the sweep's own tables order them


def test_an_empty_value_names_its_run_instead_of_a_traceback(tmp_path):
    rows = [dict(status="ok", run="freeze0-n100-s0", dataset="sst2", train_size=100, freeze="0", seed=0,
                 max_accuracy="", majority_baseline=0.5)]  # fmt: skip
    with pytest.raises(MinifreezeError, match="run freeze0-n100-s0: max_accuracy is '', not a number"):
        load_script().main([str(write_csv(tmp_path / "runs.csv", rows))])


def test_study_arms_pairs_runs_of_different_sweeps(tmp_path, capsys):
    def run(freeze, seed, value, lr):
        return dict(status="ok", train_size=1000, freeze=freeze, seed=seed, data_seed=0, lr=lr,
                    heldout_accuracy=value)  # fmt: skip

    full = write_csv(tmp_path / "a.csv", [run("0", s, 0.80 + s / 100, "5e-05") for s in range(4)]
                     + [run("head", s, 0.50, "5e-05") for s in range(4)])  # fmt: skip
    fast = write_csv(
        tmp_path / "b.csv", [run("head", s, 0.70 + s / 100 - 0.001 * s, "0.001") for s in range(4)]
    )
    lines = load("study_arms").main([f"full={full}:0", f"head fast={fast}:head", f"head={full}:head"])
    paired = next(line for line in lines if line.startswith("| 1000 ") and "p " in line)
    cells = [c.strip() for c in paired.strip("|").split("|")]
    assert cells[1].startswith("**-0.315") and cells[2].startswith("**-0.10")  # columns by name; both below
    assert "head fast" in capsys.readouterr().out
    with pytest.raises(MinifreezeError, match="LABEL=RUNS_CSV:FREEZE_SPEC"):
        load("study_arms").main(["no-label"])
    spec = write_csv(tmp_path / "c.csv", [run("random:0.9", s, 0.6, "5e-05") for s in range(4)])
    assert "| random |" not in "\n".join(load("study_arms").main([f"r={spec}:random:0.9", f"full={full}:0"]))
    with pytest.raises(MinifreezeError, match="no finished run with freeze 7"):
        load("study_arms").main([f"x={full}:7"])


def test_study_arms_joins_a_grid_run_in_parts(tmp_path):
    """--sweep: two runs.csv of one grid (subset 0 in one, subset 1 in the other) are one table, paired by
    seed and subset: the difference is +0.02 in every pair, whatever each subset's level."""

    def run(freeze, seed, subset, value):
        return dict(status="ok", train_size=100, freeze=freeze, seed=seed, data_seed=subset,
                    crossfit_accuracy=value)  # fmt: skip

    parts = []
    for subset, level in ((0, 0.60), (1, 0.80)):
        rows = [
            run(f, s, subset, level + s / 50 + (0.02 if f == "2" else 0))
            for f in ("0", "2")
            for s in range(3)
        ]
        parts += ["--sweep", str(write_csv(tmp_path / f"part{subset}.csv", rows))]
    lines = load("study_arms").main(["--metric", "crossfit_accuracy", *parts])
    assert any(line.startswith("| 100 | ") and "(6)" in line for line in lines)  # 6 runs per cell
    paired = next(line for line in lines if line.startswith("| 100 ") and "p " in line)
    assert paired.split("|")[2].strip().startswith("**+0.020 ± 0.000")
    assert any("spread across data subsets" in line for line in lines)
    with pytest.raises(MinifreezeError, match="either arms"):
        load("study_arms").main([f"x={tmp_path / 'part0.csv'}:0", *parts])


def test_study_lr_regroups_the_phase_by_depth(tmp_path):
    """One sweep per pooling and lr becomes one row per depth: each lr paired by seed with lr 5e-5 at the
    same depth. Depth 4 gains +0.05 at lr 5e-4 in every pair, depth 0 loses 0.30; a lr not run yet
    (mean pooling here) leaves its table out instead of failing."""

    def run(freeze, seed, value):
        return dict(status="ok", train_size=1000, freeze=freeze, seed=seed, data_seed=0,
                    crossfit_accuracy=value)  # fmt: skip

    for lr, shift in (("5e-5", {"0": 0.0, "4": 0.0}), ("5e-4", {"0": -0.30, "4": 0.05})):
        folder = tmp_path / f"cls-lr{lr}"
        folder.mkdir()
        rows = [
            run(f, s, 0.80 - 0.05 * int(f) / 4 + s / 100 + shift[f]) for f in ("0", "4") for s in range(3)
        ]
        write_csv(folder / "runs.csv", rows)
    (tmp_path / "mean-lr5e-5").mkdir()  # started, nothing finished
    plot = tmp_path / "lr.png"
    lines = load("study_lr").main([str(tmp_path), "--plot", str(plot)])
    assert plot.stat().st_size > 0
    means = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "(3)" in line}
    assert means["0 (none)"].rstrip(" |").endswith("5e-5") and means["4"].rstrip(" |").endswith("5e-4")
    paired = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in lines if "(p " in line}
    assert paired["0 (none)"].startswith("**-0.300 ± 0.000") and paired["4"].startswith("**+0.050 ± 0.000")
    assert not any("mean pooling" in line for line in lines)
    with pytest.raises(MinifreezeError, match="no POOLING-lrLR sweep folders"):
        load("study_lr").main([str(tmp_path / "cls-lr5e-5")])
    with pytest.raises(MinifreezeError, match="no finished runs at lr 1e-4"):
        load("study_lr").main([str(tmp_path), "--reference", "1e-4"])
