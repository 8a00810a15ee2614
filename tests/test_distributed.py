"""torchrun data parallelism: 2 CPU processes (gloo) end with the weights of one process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from minifreeze import distributed
from minifreeze.distributed import Dist, loss_weight, shard
from minifreeze.errors import MinifreezeError
from minifreeze.train import main

REPO = Path(__file__).resolve().parents[1]


def test_shards_cover_the_batch_and_weights_restore_the_mean():
    """DDP averages the ranks' gradients; with the shard weights that average is the whole batch's mean."""
    values = torch.arange(11, dtype=torch.float64) ** 2  # per-example losses (or gradients)
    ranks = [Dist(rank=r, world_size=3) for r in range(3)]
    shards = [shard(list(range(11)), info) for info in ranks]
    assert sorted(i for s in shards for i in s) == list(range(11))
    ddp_average = sum(loss_weight(len(s), 11, info) * values[s].mean() for s, info in zip(shards, ranks)) / 3
    assert float(ddp_average) == pytest.approx(float(values.mean()))


def args(model, data, out, spec):
    return [
        "--model",
        str(model),
        "--dataset",
        "toy",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--warmup",
        "0",
        "--no-progress",
        "--train-size",
        "0",
        "--freeze",
        *spec.split(),  # a spec, and maybe more flags: "0 --freeze-schedule ..."
        "--threads",
        "1",
        "--device",
        "cpu",
    ]


def test_teardown_leaves_the_group(tmp_path):
    """A group left for interpreter exit can abort a finished run (gloo's threads die in finalization)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    distributed.teardown(run_finished=True)
    assert not dist.is_initialized()
    distributed.teardown(run_finished=False)  # nothing left to leave: a no-op, not an error


def test_train_leaves_the_group_after_success_and_failure(
    dropout_free_model, toy_data, tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(distributed, "teardown", lambda run_finished: calls.append(run_finished))
    main(args(dropout_free_model, toy_data, tmp_path / "ok", "1"))
    bad = args(dropout_free_model, toy_data, tmp_path / "bad", "1")
    bad[bad.index("--dataset") + 1] = str(tmp_path / "missing.tsv")
    with pytest.raises(MinifreezeError, match="no such file or folder"):
        main(bad)
    assert calls == [True, False]  # after an error: no barrier, since the peers may never reach it


# a freeze schedule re-wraps DDP at each growth (issue 20): 12 steps, depth 0 -> -1 at step 4 -> 1 at 8
@pytest.mark.parametrize("spec", ["1", "bitfit", "0 --freeze-schedule 0@0,-1@4,1@8"])
def test_two_ranks_match_one_process(dropout_free_model, toy_data, tmp_path, spec):
    single = main(args(dropout_free_model, toy_data, tmp_path / "single", spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "minifreeze.train",
            *args(dropout_free_model, toy_data, tmp_path / "ddp", spec),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "summary.json").is_file()
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["steps"] == single["steps"] == 12
    assert ddp["freeze_events"] == single["freeze_events"]
    one = load_file(str(tmp_path / "single" / "last" / "model.safetensors"))
    two = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    # Same math, other summation order (two half-batch means averaged by all-reduce vs one mean):
    # float32 rounding differences of ~1e-7 that 12 AdamW steps may grow a little.
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=2e-5, rtol=1e-4, msg=name)
    assert ddp["metrics"]["accuracy"] == pytest.approx(single["metrics"]["accuracy"], abs=1 / 64)
