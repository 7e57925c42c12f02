"""Raw records of a data file or a hub dataset, before they become rows (`ssp.data.loading`).

A JSONL file is read line by line, each line at most `MAX_ROW_BYTES`; files of `PROGRESS_BYTES` or more show a
progress bar. Bytes that are not UTF-8, a line that is not JSON and a line over the bound each stop the run with
one line naming the file and the line.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import BinaryIO

import datasets
from tqdm.auto import tqdm

from ssp.config import DataSource, RecipeError
from ssp.recipe_checks import looks_like_local_path

# One problem with its solutions is kilobytes; a line of megabytes is a dump or a blob, which would take minutes
# and gigabytes to parse and tokenize before anything else failed.
MAX_ROW_BYTES = 8 * 2**20
PROGRESS_BYTES = 16 * 2**20  # smaller files read in well under a second
_CHUNK_BYTES = 2**20


class DataError(RecipeError):
    """A data row or file the run cannot use."""


def read_records(source: DataSource, key: str) -> list[dict]:
    """Raw records of a local file (by extension) or a hub dataset."""
    path = Path(source.path).expanduser()
    if looks_like_local_path(source.path):
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return read_jsonl(path, key)
        if suffix == ".json":
            data = _parse_json(path, key)
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"data": [...]} and similar wrappers
            if not isinstance(data, list):
                raise DataError(f"{key}.path: {path} holds a {type(data).__name__}, expected a list of records")
            return data
        if suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(path)).to_list()
        raise DataError(f"{key}.path: {path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    try:
        return datasets.load_dataset(source.path, source.name, split=source.split).to_list()
    except Exception as exc:  # the hub raises many types; the user needs the id and the reason
        raise DataError(f"{key}.path: could not load dataset {source.path!r}: {str(exc).splitlines()[0]}") from None


def read_jsonl(path: Path, key: str) -> list[dict]:
    """The objects of a JSONL file, one per non-blank line."""
    size = path.stat().st_size
    records = []
    with path.open("rb") as file, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=size < PROGRESS_BYTES
    ) as progress:  # fmt: skip
        number = 0
        while line := file.readline(MAX_ROW_BYTES + 1):
            number += 1
            if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
                length = len(line) + _rest_of_line(file)
                raise DataError(
                    f"{key}: {path} line {number} is {length / 2**20:.1f} MB; a row may hold at most "
                    f"{MAX_ROW_BYTES // 2**20} MB (MAX_ROW_BYTES in ssp/data/records.py)"
                )
            progress.update(len(line))
            text = _decode(line, path, number, key, first=number == 1)
            if text.strip():
                records.append(_parse_line(text, number, key, path))
    return records


def _rest_of_line(file: BinaryIO) -> int:
    """Skip to the end of the current line without holding it; the number of bytes skipped."""
    skipped = 0
    while chunk := file.readline(_CHUNK_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _decode(data: bytes, path: Path, line: int, key: str, first: bool) -> str:
    if first:
        data = data.removeprefix(codecs.BOM_UTF8)  # some editors open UTF-8 files with a byte-order mark
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line += data.count(b"\n", 0, exc.start)  # a whole .json file is decoded at once
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{key}: {path} line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
            f"convert the file to UTF-8"
        ) from None


def _parse_json(path: Path, key: str):
    text = _decode(path.read_bytes(), path, 1, key, first=True)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}.path: {path} is not valid JSON: {exc}") from None


def _parse_line(line: str, number: int, key: str, path: Path) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}: {path} line {number} is not valid JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise DataError(f"{key}: {path} line {number} is a {type(record).__name__}, expected an object")
    return record
