"""The README's Python API snippet runs as written (on the bundled MiniLM instead of bert-base-uncased)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_snippet() -> str:
    """The first ```python block after the "## Python API" heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no ```python block under ## Python API"
    return match.group(1)


def test_readme_python_api_snippet_runs(minilm_dir, tmp_path, monkeypatch, capsys):
    code = python_api_snippet().replace("bert-base-uncased", "bundled:minilm")
    code = code.replace('"out/"', repr(str(tmp_path / "out")))
    monkeypatch.chdir(tmp_path)  # anything the snippet writes elsewhere lands in tmp_path
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert "parameters train" in capsys.readouterr().out  # plan.summary() was printed
    logits = namespace["logits"]
    assert isinstance(logits, torch.Tensor) and logits.shape[-1] == 2 and torch.isfinite(logits).all()
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["num_labels"] == 2 and (tmp_path / "out" / "model.safetensors").is_file()
