"""Two processes over gloo: rank 1 reaches a barrier SECONDS late. With a process-group timeout shorter than that,
rank 0 gives up; longer, both pass. Each rank writes what happened to OUT/rank<r>.json.

Usage: torchrun --nproc_per_node 2 barrier_timeout.py TIMEOUT_MINUTES SECONDS OUT
"""

import json
import sys
import time
from pathlib import Path

import torch

from ssp.runs import distributed_state


def main(timeout_minutes: float, seconds: float, out: str) -> None:
    state = distributed_state(timeout_minutes)
    if state.process_index == 1:
        time.sleep(seconds)
    started = time.perf_counter()
    try:
        torch.distributed.barrier()
        outcome = "passed"
    except RuntimeError as exc:
        outcome = f"failed: {str(exc).splitlines()[0]}"
    record = {"outcome": outcome, "waited": time.perf_counter() - started, "processes": state.num_processes}
    Path(out, f"rank{state.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
