"""What the `ssp data` commands write: a JSONL file and its JSON report next to it (console tables: ssp.tables)."""

from __future__ import annotations

from pathlib import Path

from ssp.files import write_json, write_jsonl
from ssp.recipe_checks import report_path


def write_outputs(output: str, rows: list[dict], report: dict) -> None:
    """Write the rows and the report, each through a temporary file so no half-written file is left behind."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    write_json(report_path(path), report)
