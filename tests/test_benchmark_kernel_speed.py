"""benchmarks/kernel_speed.py checks an implementation against the reference before timing it.

The implementations under test are stand-ins (the reference, slightly wrong on purpose, in place of the
compiled one), so no torch.compile runs here: what is judged is the check and the refusal, not a kernel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

kernel_speed = pytest.importorskip("benchmarks.kernel_speed")
REFERENCE = kernel_speed.masked_mean_cross_entropy


class GradientTimes(torch.autograd.Function):
    """The identity forward, a backward that scales the gradient: a kernel whose loss is right and whose
    gradient is not."""

    @staticmethod
    def forward(ctx, hidden):
        return hidden.view_as(hidden)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


def stand_in(flaw: str | None):
    """masked_mean_cross_entropy where impl="compiled" is the reference with `flaw` (loss, grad or None)."""

    def op(hidden, mask, weight, bias, labels, *, impl="auto", return_logits=False, **kwargs):
        wrong = impl == "compiled" and flaw
        if wrong == "grad":
            hidden = GradientTimes.apply(hidden)
        loss, logits = REFERENCE(
            hidden, mask, weight, bias, labels, impl="reference", return_logits=True, **kwargs
        )
        if wrong == "loss":
            loss = loss * (1 + 1e-3)
        return (loss, logits) if return_logits else loss

    return op


def run(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return kernel_speed.main(
            argv + ["--cases", "tiny", "--impls", "compiled", "--repeats", "2", "--warmup", "1"]
        )
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("flaw, quantity", [("loss", "loss"), ("grad", "d_hidden")])
def test_a_wrong_kernel_is_refused_not_timed(flaw, quantity, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(kernel_speed, "masked_mean_cross_entropy", stand_in(flaw))
    monkeypatch.setattr(
        kernel_speed.common, "round_robin", lambda *a, **k: pytest.fail("a wrong kernel was timed")
    )
    assert run(["--threads", "1", "--results-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "refusing to time a wrong kernel" in err
        and f"compiled disagrees with the reference on {quantity}" in err
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_matching_kernel_is_checked_then_timed(monkeypatch, tmp_path):
    monkeypatch.setattr(kernel_speed, "masked_mean_cross_entropy", stand_in(None))
    assert run(["--threads", "1", "--results-root", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*/kernel_speed.json")
    rows = json.loads(path.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["reference", "compiled"]
    assert rows[0]["tolerance_used"] is None  # the reference is what the others are checked against
    assert set(rows[1]["tolerance_used"]) == set(kernel_speed.QUANTITIES)
    assert max(rows[1]["tolerance_used"].values()) == 0.0  # the stand-in is the reference itself
    for r in rows:
        assert r["repeats"] == 2 and r["saved_bytes"] > 0
        assert r["speedup_vs_eager"] == pytest.approx(rows[0]["median_ms"] / r["median_ms"])
    assert "checked before timing" in (path.parent / "kernel_speed.md").read_text()


def test_low_precision_tolerance_scales_with_the_references_own_error():
    """float16/bfloat16: twice the same-dtype reference's error plus one rounding unit passes, more fails."""

    def values(*v):
        return torch.tensor(v, dtype=torch.float64)

    exact = {q: values(1.0, -2.0) for q in kernel_speed.QUANTITIES}
    ref = {q: t + values(0.01, 0.0) for q, t in exact.items()}  # the reference's own error: 0.01
    eps = 2.0**-7
    inside = {q: t + values(0.0, 0.02 + 2 * eps) for q, t in exact.items()}  # 2 x 0.01 + eps x max|exact|
    outside = {q: t + values(0.0, 0.03 + 2 * eps) for q, t in exact.items()}
    assert max(kernel_speed.tolerance_used(inside, ref, exact, eps).values()) == pytest.approx(1.0, rel=1e-9)
    assert min(kernel_speed.tolerance_used(outside, ref, exact, eps).values()) > 1.0


def test_unknown_case_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        kernel_speed.main(["--cases", "huge"])
    assert exit_.value.code == 2 and "--cases: unknown ['huge']" in capsys.readouterr().err
