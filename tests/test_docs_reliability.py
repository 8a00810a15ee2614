"""docs/reliability.md is a table of hostile inputs and faults: every row names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rows() -> list[list[str]]:
    table = []
    for line in (REPO / "docs" / "reliability.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] not in ("input or fault", "---"):
            table.append(cells)
    return table


def test_every_row_names_a_test_that_exists():
    defined = set()
    for path in (REPO / "tests").glob("*.py"):
        defined |= set(re.findall(r"^def (\w+)\(", path.read_text(encoding="utf-8"), flags=re.M))
    table = rows()
    assert len(table) >= 35, f"the issue asks for at least 35 cases, the table has {len(table)}"
    for case, _, tests in table:
        names = [n.strip().split("::")[-1] for n in tests.split(",")]
        missing = [n for n in names if n not in defined]
        assert not missing, f"row {case!r} names tests that do not exist: {missing}"
