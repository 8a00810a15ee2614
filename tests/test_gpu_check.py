"""scripts/gpu_check.sh must work before a GPU is lent: on CPU with a tiny config it runs every part."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_every_part_on_a_tiny_cpu_config(tmp_path, data_dir, minilm_dir):
    env = {**os.environ, "MINIFREEZE_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(tmp_path / "out"), "--device", "cpu", "--tiny"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert result.returncode == 0, log[-3000:]
    assert "parts: tests=0 freeze_depth=0 epoch_speed=0 kernel_speed=0" in result.stdout
    written = sorted(p.name for p in (tmp_path / "out" / "results").rglob("*.json"))
    assert any(n.startswith("freeze_depth_step") for n in written), written
    assert any(n.startswith("epoch_cache") for n in written), written
    assert "kernel_speed.json" in written, written


def test_a_failing_part_does_not_stop_the_others(tmp_path):
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(tmp_path / "out"), "--device", "tpu", "--tiny"],
        cwd=REPO, env={**os.environ, "MINIFREEZE_DATA_DIR": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    parts = next(line for line in result.stdout.splitlines() if line.startswith("parts: "))
    assert "freeze_depth=" in parts and "kernel_speed=0" in parts  # the device flag breaks two, not all
    assert "freeze_depth=0" not in parts
