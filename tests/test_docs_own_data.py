"""docs/own_data.md's Python examples run as written (on the bundled MiniLM, into a temporary folder)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "own_data.md"


def python_blocks() -> list[str]:
    """The ```python blocks under "## From Python", in order."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("\n## From Python") :]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "docs/own_data.md: expected the list example and the DataFrame example"
    return blocks


def run_blocks(blocks: list[str], tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # the examples' runs/... folders land in tmp_path
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_the_list_example_trains_and_records_python_data(minilm_dir, tmp_path, monkeypatch, capsys):
    namespace = run_blocks(python_blocks()[:1], tmp_path, monkeypatch)
    summary = namespace["summary"]
    assert (
        summary["dataset"] == "python"
        and summary["train_examples"] == 8
        and summary["out"] == "runs/my-reviews"
    )
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("python ")
    model_config = json.loads((tmp_path / "runs" / "my-reviews" / "model" / "config.json").read_text())
    assert model_config["id2label"] == {"0": "negative", "1": "positive"}


def test_the_dataframe_example_runs(minilm_dir, tmp_path, monkeypatch):
    pytest.importorskip("pandas", reason="pandas is not installed (the example's only extra)")
    namespace = run_blocks(python_blocks(), tmp_path, monkeypatch)
    assert namespace["summary"]["dataset"] == "python" and namespace["summary"]["train_examples"] == 8
