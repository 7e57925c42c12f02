"""`ssp` with one more reward, `slow_boxed_match`: boxed_match that takes a second per call, so that every chunk
of probing and evaluation (each process scores its own chunks) takes at least that long on whichever process has
it. tests/test_launch.py runs a 2-process spectrum stage with it under a process-group timeout far shorter than the
sampling as a whole.

Usage: accelerate launch ... slow_scoring.py sft RECIPE key=value ...
"""

import sys
import time

from ssp.cli import main
from ssp.rewards import REWARDS
from ssp.rewards.boxed import boxed_match


def slow_boxed_match(completions, answer, **kwargs):
    time.sleep(1.0)
    return boxed_match(completions, answer, **kwargs)


if __name__ == "__main__":
    REWARDS["slow_boxed_match"] = slow_boxed_match
    sys.exit(main(sys.argv[1:]))
