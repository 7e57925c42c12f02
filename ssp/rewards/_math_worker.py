"""Entry point of a math-verify worker process (see `ssp.rewards.math_answers`); speaks `ssp.sandbox.pool`'s protocol.

Started as `python -c "from ssp.rewards._math_worker import main; main()"`: single-threaded, so math-verify's
`signal.alarm` timeouts work. It refuses to start (and the caller raises) if they cannot.
"""

from __future__ import annotations

import logging
import os
import sys

from ssp.sandbox.pool import encode_message, read_message


def main() -> None:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr so a stray print cannot corrupt it.
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.getLogger("math_verify").propagate = False  # its per-timeout warnings would flood the trainer's log
    try:
        from ssp.rewards.math_answers import require_signal_timeouts, verify_in_process

        require_signal_timeouts()
        verify_in_process("1", "1")  # import math-verify and sympy now: the first task must not pay for it
    except Exception as error:  # report why, so the pool raises with the reason instead of a bare exit code
        protocol.write(encode_message({"error": f"{type(error).__name__}: {error}"}))
        return
    protocol.write(encode_message({"ready": True, "pid": os.getpid()}))
    while (task := read_message(sys.stdin.buffer)) is not None:
        status = verify_in_process(task["answer"], task["gold"], timeout=task["timeout"])
        protocol.write(encode_message({"status": status}))


if __name__ == "__main__":
    main()
