"""benchmarks/common.py: the timer's statistics and order, the memory probes, the table writer.

Nothing here judges a millisecond: what is checked is arithmetic on known numbers and the order things run
in, which hold on any machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

common = pytest.importorskip("benchmarks.common")


def test_summary_reports_the_percentiles_of_the_samples():
    seconds = [0.005, 0.001, 0.004, 0.002, 0.003]  # 1..5 ms, unordered
    s = common.summary(seconds)
    assert s["median_ms"] == pytest.approx(3.0) and s["n"] == 5
    assert s["p10_ms"] == pytest.approx(1.4) and s["p90_ms"] == pytest.approx(4.6)
    assert s["p25_ms"] == pytest.approx(2.0) and s["p75_ms"] == pytest.approx(4.0)
    assert common.summary([0.007])["p90_ms"] == pytest.approx(7.0)  # one sample: every percentile is it


def _recording_side(name: str, log: list):
    """A Side whose every phase appends to `log`: the test reads the order things ran in."""

    def prepare(batch):
        log.append((name, "prepare", batch))
        return batch

    def loss_fn(batch):
        log.append((name, "loss", batch))
        return torch.zeros((), requires_grad=True)

    return common.Side(
        name, loss_fn, backward=lambda loss: log.append((name, "backward", None)), prepare=prepare
    )


def test_round_robin_interleaves_rotates_and_records_only_timed_rounds():
    log: list = []
    sides = [_recording_side(n, log) for n in ("a", "b", "c")]
    common.round_robin(sides, lambda i: i * 10, steps=3, warmup=1, rotate=True)
    losses = [(name, batch) for name, what, batch in log if what == "loss"]
    # round i feeds batch 10 i to every side; the first side moves on by one each round
    assert losses == [("a", 0), ("b", 0), ("c", 0), ("b", 10), ("c", 10), ("a", 10),
                      ("c", 20), ("a", 20), ("b", 20), ("a", 30), ("b", 30), ("c", 30)]  # fmt: skip
    assert [w for n, w, _ in log if n == "a"][:3] == ["prepare", "loss", "backward"]
    for side in sides:  # the warm-up round is not recorded
        assert all(len(v) == 3 for v in side.times.values()), side.times


def test_side_clips_gradients_before_the_optimizer_step():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    side = common.Side("clip", lambda b: (weight * b).sum(), optimizer, max_grad_norm=1.0)
    side.step(torch.tensor([30.0, 40.0, 0.0]))  # gradient norm 50, clipped to 1
    assert weight.detach().tolist() == pytest.approx([-0.6, -0.8, 0.0], abs=1e-6)


def test_saved_bytes_excludes_what_it_is_told_to():
    weight = torch.nn.Parameter(torch.ones(256, 256))
    side = common.Side("mm", lambda x: (x @ weight).sum())
    x = torch.ones(8, 256, requires_grad=True)
    with_weight = side.saved_bytes(x, [x])  # matmul saves x and weight; x excluded
    assert with_weight == weight.numel() * 4
    assert side.saved_bytes(x, [x, weight]) == 0


def test_peak_step_bytes_sees_a_large_allocation():
    def allocate(_):
        block = torch.ones(64, 2**20 // 4)  # 64 MiB, touched
        return block.sum() * torch.zeros((), requires_grad=True)

    peak = common.peak_step_bytes(common.Side("alloc", allocate), None)
    if peak is None:
        pytest.skip("the resident-set high-water mark cannot be reset here (not Linux)")
    assert peak >= 48 * 2**20  # at least most of it: glibc may reuse memory it already held


def test_markdown_table_aligns_columns_as_asked():
    lines = common.markdown_table(["a", "b"], "lr", [["x", 1.5]])
    assert lines == ["| a | b |", "|---|---:|", "| x | 1.5 |"]


def test_peak_step_bytes_says_not_measured_when_the_mark_cannot_be_reset(monkeypatch):
    """A high-water mark left over from earlier work would read as this step's peak: None instead."""
    if common._resident_mib() is None:
        pytest.skip("no /proc/self/status here")
    block = torch.ones(64, 2**20 // 4)  # 64 MiB touched, then freed: the mark is now above the RSS
    del block
    monkeypatch.setattr(common, "reset_peak_memory", lambda device: None)  # clear_refs refused
    step = common.Side("small", lambda _: torch.zeros((), requires_grad=True))
    assert common.peak_step_bytes(step, None) is None
