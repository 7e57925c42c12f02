"""Run an `ssp` command in this process and `kill -9` it at a chosen point, or count the work it does.

    python tests/scripts/kill_at.py POINT N COUNTS.json -- sft recipes/demo/sft.yaml output_dir=... key=value ...

POINT is one of `KILL_POINTS` (the N-th time that point is reached, the process sends itself SIGKILL: no cleanup,
no atexit, like a pre-empted node) or `none` (run to the end). Either way COUNTS.json receives, as the run goes,
how often each unit of work started: training steps, checkpoint saves, probed or evaluated models, merges.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import transformers

import ssp.resume
import ssp.signal.run
import ssp.spectrum.fusion
import ssp.spectrum.run
from ssp.cli import main

counts: Counter = Counter()


def counting(owner, name: str, unit: str, kill_before: bool = False, kill_after: bool = False):
    """Wrap `owner.name` so each call counts as one `unit`; at the N-th call of the chosen point, die."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        counts[unit] += 1
        Path(COUNTS).write_text(json.dumps(counts))
        if kill_before and unit == POINT and counts[unit] == N:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if kill_after and unit == POINT and counts[unit] == N:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


# point -> (object, attribute): "step" dies inside a training step (before its optimizer update), "saved" right
# after a training state is complete, "probe" at the start of probing a checkpoint, "merge" after the merged
# weights are written but before the folder is complete, "test" / "rl-test" at the start of a test-split
# evaluation, "stage" as an RL curriculum stage starts.
KILL_POINTS = {
    "step": (transformers.Trainer, "training_step", "before"),
    "saved": (ssp.resume.TrainingCheckpoints, "on_save", "after"),
    "probe": (ssp.spectrum.run, "evaluate_model", "before"),
    "test": (ssp.spectrum.run, "evaluate_models", "before"),
    "rl-test": (ssp.signal.run, "evaluate_models", "before"),
    "merge": (ssp.spectrum.fusion, "_write_merge", "after"),
    "stage": (ssp.signal.run, "train_stage", "before"),
}

if __name__ == "__main__":
    separator = sys.argv.index("--")
    POINT, N, COUNTS = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if POINT != "none" and POINT not in KILL_POINTS:
        sys.exit(f"unknown kill point {POINT!r}; one of {', '.join(KILL_POINTS)}")
    for unit, (owner, attribute, when) in KILL_POINTS.items():
        counting(owner, attribute, unit, kill_before=when == "before", kill_after=when == "after")
    sys.exit(main(sys.argv[separator + 1 :]))
