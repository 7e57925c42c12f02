"""Evaluate one model on the synthetic test split, spread over however many processes launch this, and write the
result to OUT/rank<r>.json. tests/test_parallel.py compares a 1-process and a 2-process run.

Usage: python spread_evaluation.py MODEL_DIR OUT [BACKEND]   (or under accelerate launch / torchrun)
"""

import json
import sys
from pathlib import Path

from ssp.config import DataSource, SamplingConfig, TaskConfig
from ssp.data.loading import load_split
from ssp.evaluation.evaluate import evaluate_model
from ssp.runs import distributed_state, release_distributed


def main(model_dir: str, out: str, backend: str = "transformers") -> None:
    state = distributed_state(timeout_minutes=5)
    rows = load_split([DataSource(split="test")], TaskConfig(test_size=5), "data.test")
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=12, batch_size=3)  # 7 chunks of 3 rows
    common = {"seed": 11, "backend": backend, "progress": False}
    sampled = evaluate_model(model_dir, rows, sampling, [1, 2, 4], name="test", **common)
    greedy = evaluate_model(model_dir, rows, sampling, [1], name="greedy", greedy=True, **common)
    record = {"processes": state.num_processes, "sampled": sampled, "greedy": greedy}
    Path(out, f"rank{state.process_index}.json").write_text(json.dumps(record, sort_keys=True))
    release_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
