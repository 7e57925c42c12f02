"""Raw records of a data file or a hub dataset, before they become rows (`ssp.data.loading`)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from ssp.config import DataSource, RecipeError
from ssp.models import looks_like_local_path


class DataError(RecipeError):
    """A data row or file the run cannot use."""


def read_records(source: DataSource, key: str) -> list[dict]:
    """Raw records of a local file (by extension) or a hub dataset."""
    path = Path(source.path).expanduser()
    if looks_like_local_path(source.path):
        suffix = path.suffix.lower()
        try:
            if suffix == ".jsonl":
                lines = path.read_text().splitlines()
                return [_parse_line(line, i, key, path) for i, line in enumerate(lines) if line.strip()]
            if suffix == ".json":
                data = json.loads(path.read_text())
                if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                    data = next(iter(data.values()))  # {"data": [...]} and similar wrappers
                if not isinstance(data, list):
                    raise DataError(f"{key}.path: {path} holds a {type(data).__name__}, expected a list of records")
                return data
            if suffix == ".parquet":
                return datasets.Dataset.from_parquet(str(path)).to_list()
        except json.JSONDecodeError as exc:
            raise DataError(f"{key}.path: {path} is not valid JSON: {exc}") from None
        raise DataError(f"{key}.path: {path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    try:
        return datasets.load_dataset(source.path, source.name, split=source.split).to_list()
    except Exception as exc:  # the hub raises many types; the user needs the id and the reason
        raise DataError(f"{key}.path: could not load dataset {source.path!r}: {str(exc).splitlines()[0]}") from None


def _parse_line(line: str, index: int, key: str, path: Path) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}: {path} line {index + 1} is not valid JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise DataError(f"{key}: {path} line {index + 1} is a {type(record).__name__}, expected an object")
    return record
