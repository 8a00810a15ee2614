"""The study's intervals and paired tests (minifreeze/stats.py) and the tables built on them."""

from __future__ import annotations

import math
import statistics

import pytest

from minifreeze import stats
from minifreeze.sweep.report import interval_tables, paired_cells


@pytest.mark.parametrize(
    "df, quantile",  # two-sided 95% points of Student's t, from any printed table
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (14, 2.1448), (30, 2.0423), (200, 1.9719)],
)
def test_t_quantiles_match_the_printed_table(df, quantile):
    assert stats.t_quantile(0.95, df) == pytest.approx(quantile, abs=1e-4)
    assert stats.t_central(quantile, df) == pytest.approx(0.95, abs=1e-5)


def test_t_tails_at_known_points():
    assert stats.t_central(1.0, 1) == pytest.approx(0.5, abs=1e-9)  # Cauchy: P(|T| <= 1) = 1/2
    assert stats.t_central(0.0, 5) == 0.0
    assert stats.t_central(1e6, 3) == pytest.approx(1.0, abs=1e-9)


def test_chi_square_cdf_and_the_interval_of_a_std():
    assert stats.chi2_cdf(9.4877, 4) == pytest.approx(0.95, abs=1e-5)
    assert stats.chi2_cdf(0.4844, 4) == pytest.approx(0.025, abs=1e-4)
    assert stats.chi2_cdf(2.0, 2) == pytest.approx(1 - math.exp(-1), abs=1e-12)  # exponential with mean 2
    std, low, high = stats.std_ci([1, 2, 3, 4, 5])
    assert std == pytest.approx(statistics.stdev([1, 2, 3, 4, 5]))
    assert (low / std, high / std) == pytest.approx((0.5991, 2.8735), abs=1e-3)  # 4 df: [sqrt(4/11.14), ...]
    assert math.isnan(stats.std_ci([0.5])[0])


def test_mean_ci_and_paired_t_test_by_hand():
    mean, half = stats.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.3027 * 1 / math.sqrt(3), abs=1e-4)
    assert math.isnan(stats.mean_ci([1.0])[1])
    a = {(0, 0): 0.5, (1, 0): 0.6, (2, 0): 0.7, (3, 0): 0.9}  # (3, 0) has no partner: left out
    b = {(0, 0): 1.5, (1, 0): 2.6, (2, 0): 3.7}
    test = stats.paired(a, b)  # differences 1, 2, 3: t = 2 / (1 / sqrt 3) = 3.464 with 2 df
    assert (test.n, test.mean) == (3, pytest.approx(2.0))
    assert test.p == pytest.approx(0.0742, abs=1e-4)
    assert stats.paired(a, a).p == 1.0  # the same runs: no difference at all
    shifted = {k: v + 0.01 for k, v in a.items()}
    assert stats.paired(a, shifted).p == 0.0 and stats.paired(a, shifted).half_width == 0.0
    with pytest.raises(ValueError, match="nothing to pair"):
        stats.paired(a, {(9, 9): 1.0})


def test_holm_steps_down_and_stops():
    assert stats.holm([0.01, 0.04, 0.03, float("nan")]) == [True, False, False, False]  # 0.03 > 0.05/2
    assert stats.holm([0.001, 0.02, 0.04]) == [True, True, True]  # 0.05/3, 0.05/2, 0.05/1
    assert stats.holm([]) == []


def rows_for(values: dict[str, list[float]], subsets: int = 1) -> list[dict]:
    """runs.csv-like rows (strings, as read back) at n = 100: values[spec][i] is run i."""
    rows = []
    for spec, runs in values.items():
        for i, value in enumerate(runs):
            rows.append(dict(status="ok", train_size="100", freeze=spec, seed=str(i // subsets),
                             data_seed=str(i % subsets), heldout_accuracy=str(value)))  # fmt: skip
    return rows


def test_paired_table_marks_a_consistent_difference_and_not_a_noisy_one():
    base = [0.80, 0.70, 0.85, 0.75, 0.90]  # large seed noise, shared by the pair
    rows = rows_for({
        "0": base,
        "2": [v + 0.02 + e for v, e in zip(base, (0.001, -0.002, 0.0, 0.002, -0.001))],  # always +0.02
        "4": [0.70, 0.95, 0.72, 0.88, 0.78],  # the same mean as depth 0, unrelated run by run
    })  # fmt: skip
    lines = interval_tables(rows, "heldout_accuracy")
    row = next(line for line in lines if line.startswith("| 100 ") and "p " in line)
    two, four = [cell.strip() for cell in row.strip("|").split("|")][1:]
    assert two.startswith("**+0.020") and "*" in two.removeprefix("**").split("(")[0]  # significant
    assert not four.startswith("**") and "*" not in four  # no difference shown
    means = next(line for line in lines if line.startswith("| 100 ") and "(5)" in line)
    expected = stats.mean_ci(base)
    assert f"{expected[0]:.3f} ± {expected[1]:.3f} (5)" in means


def test_spread_is_pooled_within_data_subsets():
    # two subsets whose means differ a lot: the seed spread must not count that difference
    rows = rows_for({"0": [0.50, 0.90, 0.52, 0.92, 0.54, 0.94]}, subsets=2)
    cells = paired_cells(rows, "heldout_accuracy")
    assert set(cells[100, "0"]) == {(s, d) for s in range(3) for d in range(2)}
    lines = interval_tables(rows, "heldout_accuracy")
    spread, across = [line for line in lines if line.startswith("| 100 ")][-2:]
    std = (sum((x - m) ** 2 for m, xs in ((0.52, (0.50, 0.52, 0.54)), (0.92, (0.90, 0.92, 0.94))) for x in xs)
           / 4) ** 0.5  # fmt: skip
    assert spread.split("|")[2].strip().startswith(f"{std:.3f} [")
    # ...and the subsets' own spread is the std of their means, 0.52 and 0.92, on 1 degree of freedom
    low, high = stats.sigma_interval(statistics.stdev([0.52, 0.92]), 1)
    assert across.split("|")[2].strip() == f"{statistics.stdev([0.52, 0.92]):.3f} [{low:.3f}, {high:.3f}]"
    assert any("spread across data subsets" in line for line in lines)
    one_subset = interval_tables(rows_for({"0": [0.5, 0.6, 0.7]}), "heldout_accuracy")
    assert not any("spread across data subsets" in line for line in one_subset)
