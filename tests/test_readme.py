"""The README's error table is the error table in code, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from pdsidecar.errors import ERROR_TABLE

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_error_table_matches_errors_module() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- error-table.*?-->\n(.*?)<!-- /error-table -->", text, re.S)
    assert block, "README lost its error-table markers"
    rows = [line.strip("|").split("|") for line in block.group(1).splitlines()[2:]]
    documented = {
        cells[0].strip(): (cells[1].strip(), cells[2].strip(), cells[3].strip()) for cells in rows
    }
    expected = {
        reason: (kind.code.name, "yes" if kind.retryable else "no", kind.meaning)
        for reason, kind in ERROR_TABLE.items()
    }
    assert documented == expected
