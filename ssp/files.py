"""Every file and model folder ssp writes goes through here: written beside its target, then renamed into place.

A run killed at any instant (kill -9, a pre-empted node, Ctrl-C) leaves either the old file or the new one, never a
half-written one, so resuming can trust whatever it finds under its final name. A folder is built under
`.<name>.writing` and renamed when complete; leftovers of an interrupted write are cleared by the next write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8; the parent folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows) -> Path:
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def staging_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.writing")


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder under a staging name and move it to `target` only when the block finishes without error;
    an existing `target` is replaced. The staging folder of an earlier, interrupted write is removed first."""
    target = Path(target)
    staging = staging_path(target)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)


def replace_dir(source: Path, target: Path) -> None:
    """Move the finished folder `source` to `target`. An old `target` is first renamed aside, so at every instant
    one complete folder is under the final name or none is (never a partial one)."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old")
        if retired.exists():
            shutil.rmtree(retired)
        os.replace(target, retired)
        os.replace(source, target)
        shutil.rmtree(retired)
    else:
        os.replace(source, target)
