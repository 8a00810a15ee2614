"""Who ran a benchmark: a short machine tag for result folders, and the facts worth recording beside numbers.

Used through ``benchmarks/common.py`` (whose ``write_results`` puts them into every result file):
  * ``machine_tag(device)`` names the folder ``benchmarks/results/<tag>/`` (e.g. ``cpu-amd-epyc-2t``);
  * ``machine_info(device)`` (CPU model and ISA flags, threads, versions, GPU, git commit);
  * ``command_line()`` and ``load_average()`` record how a run was started and how busy the machine was
    (on a shared machine a high load average explains noisy CPU timings).
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# CPU features that decide what a GEMM or a bf16 autocast step costs: recorded so that a reader can tell
# why bf16 is (or is not) fast on the machine that produced a table.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo(field: str) -> str | None:
    """The first `field: value` line of /proc/cpuinfo (Linux), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo; `platform.processor()` elsewhere."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown-cpu"


def cpu_flags() -> list[str]:
    """The ISA_FLAGS this CPU reports in /proc/cpuinfo (empty where it cannot be read)."""
    present = set((_cpuinfo("flags") or "").split())
    return [flag for flag in ISA_FLAGS if flag in present]


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: on a shared machine, the context every CPU timing needs."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def git_commit() -> str | None:
    """HEAD's short hash, with ``+dirty`` when tracked files differ (results from uncommitted code)."""
    try:
        run = lambda *cmd: subprocess.run(  # noqa: E731
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        head = run("git", "rev-parse", "--short", "HEAD")
        dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def command_line(args: list[str] | None = None, script: str | None = None) -> str:
    """How this run was started, as a shell line that reproduces it from the repo root.

    A benchmark called in-process (`main(argv)`, as the tests do) passes its own `args` and `script`,
    since sys.argv then belongs to the caller (pytest)."""
    argv = list(sys.argv) if args is None else [script or sys.argv[0], *args]
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO_ROOT))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


def _slug(text: str, max_len: int = 32) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-") or "unknown"


def _on_cuda(device: str | torch.device | None) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def machine_tag(device: str | torch.device | None = None) -> str:
    """``cuda-<gpu>`` for a CUDA run, else ``cpu-<cpu model>-<torch threads>t`` (e.g. ``cpu-amd-epyc-2t``).

    ``device`` is where the benchmark ran; by default CUDA when a GPU is visible.
    """
    if _on_cuda(device):
        return "cuda-" + _slug(torch.cuda.get_device_name(torch.device(device or "cuda")))
    return f"cpu-{_slug(_cpu_model())}-{torch.get_num_threads()}t"


def machine_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """CPU model, threads, library versions and the GPU (if used): what a reader needs to compare numbers."""
    info: dict[str, Any] = {
        "tag": machine_tag(device),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15m": load_average(),
        "isa_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_device": None,
    }
    for module in ("triton", "transformers"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    if _on_cuda(device):
        props = torch.cuda.get_device_properties(torch.device(device or "cuda"))
        info["cuda_device"] = props.name
        info["cuda_capability"] = f"{props.major}.{props.minor}"
        info["cuda_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda_runtime"] = torch.version.cuda
    return info
