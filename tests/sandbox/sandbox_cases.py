"""Shared helpers of the sandbox tests: which backends run here, and running one program."""

from __future__ import annotations

import os
import shutil
import textwrap

from ssp.rewards.code import check_programs
from ssp.sandbox.backends import BACKENDS

TIMEOUT = 1.0


def backend_skip_reason(backend: str) -> str | None:
    """Why this machine (or SSP_SANDBOX) leaves out a backend's tests; None when they run. A forced backend that
    cannot start is an error, never a skip."""
    forced = os.environ.get("SSP_SANDBOX", "auto")
    if forced == backend:
        return None
    if forced in BACKENDS:
        return f"SSP_SANDBOX={forced}: only the {forced} backend's tests run"
    if backend == "bwrap" and shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap): the bwrap backend is not tested here"
    return None


def run_one(sandbox, program, tests, **kwargs):
    return check_programs([textwrap.dedent(program)], [tests], TIMEOUT, sandbox=sandbox, **kwargs)[0]
