"""The CUDA paths, on a GPU: the Triton kernel compiled for the device, AMP, compile, fused AdamW, the
GPU-resident cache and a short real run. Every test skips without CUDA and says why; on a GPU machine
`bash scripts/gpu_check.sh OUT` runs them first, then the headline benchmarks.

The kernel cases and tolerances are the interpreter tests' own (tests/test_kernel_triton.py), plus the
sizes a real head sees (B=64, T=128, H=768; C=2 and C=1000).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_kernel_triton import CASES, DTYPES, _compare_case, check_errors

import minifreeze
from minifreeze.freezing import freeze
from minifreeze.optim import make_optimizer
from minifreeze.train import main as train_main

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: these run on a GPU machine (bash scripts/gpu_check.sh OUT)",
)

LARGE = {
    "real_head_c2": dict(B=64, T=128, H=768, C=2, mask="bool", bias=True, use_logits=False),
    "real_head_c1000": dict(B=64, T=128, H=768, C=1000, mask="bool", bias=True, use_logits=False),
}


@pytest.fixture(scope="module")
def triton_on_gpu():
    pytest.importorskip("triton", reason="triton is not installed: the fused kernel cannot be compiled")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: these tests are for the compiled kernel")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", [*CASES, *LARGE])
def test_compiled_kernel_matches_reference(triton_on_gpu, name, dtype):
    spec = {**CASES, **LARGE}[name]
    result = _compare_case(spec, DTYPES[dtype], seed=7, device="cuda")
    check_errors(result, f"{name}-{dtype}")


def train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model), "--dataset", "toy", "--data-dir", str(data), "--out", str(out),
        "--device", "cuda", "--epochs", "1", "--max-steps", "4", "--batch-size", "16", "--lr", "3e-3",
        "--warmup", "0", "--no-progress", "--train-size", "0", "--freeze", "1", "--max-length", "64", *extra,
    ]  # fmt: skip


def frozen_unchanged(base: Path, trained: Path, prefix: str = "bert.embeddings.") -> bool:
    before, after = load_file(str(base / "model.safetensors")), load_file(str(trained / "model.safetensors"))
    names = [n for n in before if n.startswith(prefix)]
    return bool(names) and all(torch.equal(before[n], after[n]) for n in names)


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_one_short_run_per_amp_mode(toy_model, toy_data, tmp_path, amp):
    fp32 = train_main(train_args(toy_model, toy_data, tmp_path / "fp32"))
    summary = train_main(train_args(toy_model, toy_data, tmp_path / amp, "--amp", amp))
    assert torch.isfinite(torch.tensor(summary["metrics"]["loss"]))
    assert frozen_unchanged(toy_model, tmp_path / amp / "model")
    assert abs(summary["metrics"]["loss"] - fp32["metrics"]["loss"]) < 0.05  # half precision, 4 steps


def test_compiled_training_equals_eager_on_cuda(dropout_free_model, toy_data, tmp_path):
    eager = train_main(train_args(dropout_free_model, toy_data, tmp_path / "eager"))
    compiled = train_main(train_args(dropout_free_model, toy_data, tmp_path / "compiled", "--compile"))
    assert compiled["metrics"]["loss"] == pytest.approx(eager["metrics"]["loss"], rel=1e-4, abs=1e-5)


def test_fused_adamw_is_used_and_element_masks_hold(toy_model):
    model = minifreeze.load_model(str(toy_model), num_labels=2, reinit_head="mismatch").cuda()
    plan = freeze(model, "random:0.5")
    optimizer = make_optimizer(model, plan, lr=1e-2)
    assert optimizer.defaults["fused"], "AdamW on CUDA parameters should be the fused one"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(5, 20, (4, 12), device="cuda")
    for _ in range(3):
        loss, _ = model.loss(ids, torch.ones_like(ids), None, torch.tensor([0, 1, 0, 1], device="cuda"))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, mask in plan.element_masks.items():
        param = dict(model.named_parameters())[name]
        assert torch.equal(param[~mask], before[name][~mask]), f"{name}: a frozen element moved"


def test_gpu_resident_cache_equals_the_uncached_run(dropout_free_model, toy_data, tmp_path):
    plain = train_main(train_args(dropout_free_model, toy_data, tmp_path / "plain"))
    cached = train_main(
        train_args(dropout_free_model, toy_data, tmp_path / "cached", "--cache-frozen", "--cache-dir", "none")
    )
    assert cached["cache"]["device"].startswith("cuda")
    assert cached["metrics"]["loss"] == pytest.approx(plain["metrics"]["loss"], rel=1e-5, abs=1e-6)


def test_short_real_run_bf16_with_the_cache(minilm_dir, data_dir, tmp_path):
    """The bundled MiniLM on a slice of SST-2, end to end, as a user would run it on a GPU."""
    summary = train_main([
        "--model", str(minilm_dir), "--dataset", "sst2", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
        "--device", "cuda", "--amp", "bf16", "--cache-frozen", "--cache-dir", "none", "--freeze", "4",
        "--train-size", "512", "--epochs", "2", "--batch-size", "32", "--max-length", "64", "--no-progress",
    ])  # fmt: skip
    assert summary["metrics"]["accuracy"] > summary["majority_baseline"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 32
