"""Run one MGPO step on 2 processes where a group of 4 completions straddles them (6 completions per process).

The correctness reward depends only on the rank. Each rank writes its gathered rewards and its local slice
of the weighted advantages to OUT/rank<r>.json;
tests/test_mgpo_two_process.py recomputes them. Usage: accelerate launch ... mgpo_two_process.py MODEL_DIR OUT
"""

import json
import os
import sys
from pathlib import Path

from datasets import Dataset

from ssp.config import RLSection
from ssp.models import load_model, load_tokenizer
from ssp.signal.config import build_mgpo_config
from ssp.signal.trainer import MGPOTrainer


def first_rank_correct(completions, **kwargs):
    """1 on rank 0, 0 on rank 1: the group straddling both ranks has p = 0.5, its two halves 1 and 0."""
    return [float(os.environ["RANK"] == "0") for _ in completions]


def main(model_dir: str, out: str) -> None:
    rl = RLSection(
        per_device_train_batch_size=6,
        num_generations=4,
        max_completion_length=8,
        max_steps=1,
        rewards={"first_rank_correct": 1.0},
        mgpo_lambda=1.5,
    )
    prompts = [{"prompt": [{"role": "user", "content": f"Compute {i}+{i}."}]} for i in range(12)]
    args = build_mgpo_config(rl, Path(out), "t", 0)  # mgpo_lambda comes from the section
    args.correctness_reward = "first_rank_correct"
    trainer = MGPOTrainer(
        model=load_model(model_dir),
        reward_funcs=[first_rank_correct],
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=load_tokenizer(model_dir),
    )
    records = []
    original = trainer._generate_and_score_completions

    def capture(inputs):
        output = original(inputs)
        records.append(
            {
                "rank": trainer.accelerator.process_index,
                "processes": trainer.accelerator.num_processes,
                "gathered_correctness": trainer._gathered_rewards[:, 0].tolist(),
                "local_advantages": output["advantages"].tolist(),
            }
        )
        return output

    trainer._generate_and_score_completions = capture
    trainer.train()
    Path(out, f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps(records[0]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
