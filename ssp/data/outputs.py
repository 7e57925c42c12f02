"""What the `ssp data` commands write: a JSONL file and its JSON report next to it (console tables: ssp.tables)."""

from __future__ import annotations

from pathlib import Path

from ssp.config import RecipeError
from ssp.files import write_json, write_jsonl


def report_path(output: str | Path) -> Path:
    """`data/sft/math.jsonl` -> `data/sft/math.report.json`."""
    return Path(output).with_suffix(".report.json")


def check_output(output: str, overwrite: bool, key: str = "output") -> None:
    """Refuse, before any work, an output that is not JSONL or that exists (unless `overwrite`)."""
    if not output:
        raise RecipeError(f"{key}: required (the JSONL file to write), e.g. {key}=data/train.jsonl")
    path = Path(output)
    if path.suffix != ".jsonl":
        raise RecipeError(f"{key}: {output} must end in .jsonl")
    for existing in (path, report_path(path)):
        if existing.exists() and not overwrite:
            raise RecipeError(f"{key}: {existing} already exists; choose another or pass overwrite=true")


def write_outputs(output: str, rows: list[dict], report: dict) -> None:
    """Write the rows and the report, each through a temporary file so no half-written file is left behind."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    write_json(report_path(path), report)
