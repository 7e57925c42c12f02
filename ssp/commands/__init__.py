"""The `ssp` commands, one module per group: each has `add_arguments(parser, command)` and `run(args) -> int`, and
`ssp.cli` imports it only when one of its commands runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    """Ctrl-C during a command that keeps its finished work; the message says where and how to resume."""


@contextmanager
def kept_on_interrupt(note: str) -> Iterator[None]:
    """Turn a Ctrl-C inside the block into `Interrupted(note)`, which the CLI prints as its one line. Outside such
    a block a Ctrl-C is reported as "nothing was written": every command writes its files atomically at the end."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(note) from None
