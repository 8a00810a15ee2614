"""Packaging guard for the `kernels` naming trap (docs: DESIGN.md, kernels/README.md).

Hugging Face's PyPI package `kernels` installs a top-level module `kernels`, and transformers probes
`import kernels` when it loads a model. So nothing of ours may ever be importable as `kernels`: the
folder `kernels/` has no `__init__.py`, the code lives in `kernels/minifreeze_kernels/`, and no file or
folder anywhere else is called `kernels.py` / `kernels/`-with-`__init__.py`.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
}


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        yield Path(dirpath), dirnames, filenames


def test_nothing_is_importable_as_kernels() -> None:
    offenders = []
    for dirpath, dirnames, filenames in _walk(REPO):
        for f in filenames:
            # kernels.py, kernels.pyi, and compiled extensions such as kernels.cpython-311-x86_64-linux-gnu.so
            if f.split(".")[0] == "kernels" and f.endswith((".py", ".pyi", ".so", ".pyd")):
                offenders.append(dirpath / f)
        if "kernels" in dirnames and (dirpath / "kernels" / "__init__.py").exists():
            offenders.append(dirpath / "kernels" / "__init__.py")
    assert not offenders, f"these would be importable as a module named `kernels`: {offenders}"


def test_setup_cfg_maps_the_kernel_package() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    packages = cfg["options"]["packages"].split()
    package_dir = dict(
        line.split("=", 1) for line in cfg["options"]["package_dir"].strip().splitlines() if "=" in line
    )
    package_dir = {k.strip(): v.strip() for k, v in package_dir.items()}
    assert "minifreeze_kernels" in packages and "kernels" not in packages
    assert package_dir["minifreeze_kernels"] == "kernels/minifreeze_kernels"
    assert (REPO / package_dir["minifreeze_kernels"] / "__init__.py").is_file()


def test_setup_cfg_lists_every_subpackage() -> None:
    """The package list is explicit (see setup.cfg), so a new subpackage (minifreeze/cache/) must be named
    there, or an installed minifreeze lacks it while the tests, run from the repository, still pass."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    packages = set(cfg["options"]["packages"].split())
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "minifreeze").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - packages == set()


def test_stable_import_path() -> None:
    import minifreeze.ops as ops

    assert callable(ops.masked_mean_cross_entropy)
    assert ops.masked_mean_cross_entropy.__module__ == "minifreeze_kernels.masked_mean_cross_entropy"


PROBE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
spec = importlib.util.find_spec("kernels")
result = {"found": spec is not None, "file": None, "ours_imported": []}
if spec is not None:
    import kernels
    result["file"] = getattr(kernels, "__file__", None)
    result["ours_imported"] = sorted(m for m in set(sys.modules) - before if m.startswith("minifreeze"))
try:
    from transformers.utils.import_utils import is_kernels_available
    result["transformers_sees_kernels"] = is_kernels_available()
except ImportError:
    result["transformers_sees_kernels"] = None
print(json.dumps(result))
"""


def test_import_kernels_from_repo_root_runs_none_of_our_code() -> None:
    """With the repo root first on sys.path, `import kernels` finds at most an empty namespace package.

    Where Hugging Face's `kernels` is installed, a regular package beats a namespace portion, so theirs
    is imported; where it is not, transformers must still not mistake our folder for it.
    """
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["file"] is not None:
        assert not Path(result["file"]).resolve().is_relative_to(REPO), result
    assert result["ours_imported"] == [], result
    hf_kernels_installed = result["file"] is not None  # a real module file, and (checked above) not ours
    if result["transformers_sees_kernels"] is not None and not hf_kernels_installed:
        assert result["transformers_sees_kernels"] is False, result  # our folder is not mistaken for theirs


# Standard-library modules newer than some Python we might declare: importing one raises the floor.
STDLIB_SINCE = {"tomllib": (3, 11), "graphlib": (3, 9), "zoneinfo": (3, 9)}


def test_declared_python_has_every_stdlib_module_we_import() -> None:
    """python_requires once said 3.10 while cli.py imported tomllib (3.11): every command failed there."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    floor = tuple(int(x) for x in parser["options"]["python_requires"].removeprefix(">=").split("."))
    for path in sorted((REPO / "minifreeze").rglob("*.py")) + sorted((REPO / "kernels").rglob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in STDLIB_SINCE:
                needed = STDLIB_SINCE[words[1].split(".")[0]]
                assert floor >= needed, (
                    f"{path.name} imports {words[1]} (Python {needed}) but setup.cfg says {floor}"
                )


INSTALLED_PROBE = """
import json, sys
import minifreeze
from minifreeze import cli, train
cfg = cli.parse(train.TrainConfig, ["--config", "bitfit_sst2"], "train", "")
print(json.dumps({"file": minifreeze.__file__, "freeze": cfg.freeze}))
"""


@pytest.mark.slow
def test_an_installed_package_has_its_configs_and_prefetcher(tmp_path):
    """Built as a wheel and unpacked (what pip install does for a pure wheel), away from the checkout:
    `--config bitfit_sst2` finds the shipped recipe, and `python -m minifreeze.prefetch` runs."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for name in ("minifreeze", "kernels"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path / 'dist')!r}))"
    built = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run(
        [sys.executable, "-c", INSTALLED_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(tmp_path / "site") and result["freeze"] == "bitfit"
    from minifreeze.hub import bundled_model_dir

    # the bundled MiniLM needs no network: a real fetch from the installed package (else only its --help)
    name = "bundled:minilm" if bundled_model_dir() is not None else "--help"
    prefetch = subprocess.run(
        [sys.executable, "-m", "minifreeze.prefetch", name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert prefetch.returncode == 0, prefetch.stderr[-3000:]
    assert prefetch.stdout.startswith("model bundled:minilm: " if name != "--help" else "usage: ")
