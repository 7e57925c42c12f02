"""Dynamic sampling (DAPO) on real GRPO steps of a tiny model, with a reward that fixes which groups vary.

Each prompt has a kind: `right` (every completion scores 1), `wrong` (every one 0) or `mixed` (1 and 0
alternating, so its group varies). The batch the seam returns is recomputed from every generation round it ran.
Run as a script under `accelerate launch` (MODEL_DIR OUT), it takes one step on 2 processes and writes each rank's
rounds and batch to OUT/rank<r>.json for the two-process test.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from ssp.config import RecipeError, RLSection, load_recipe
from ssp.models import load_model, load_tokenizer
from ssp.signal.config import build_mgpo_config
from ssp.signal.trainer import MGPOTrainer

REPO = Path(__file__).resolve().parents[1]
GROUP = 4


def by_kind(completions, kind, **kwargs):
    """right: 1, wrong: 0, mixed: 1 and 0 alternating down the rows (a group of 4 scores 1, 0, 1, 0)."""
    return [1.0 if k == "right" else 0.0 if k == "wrong" else float(i % 2 == 0) for i, k in enumerate(kind)]


def make_trainer(model_dir, out, kinds, dynamic=True, max_rounds=8, batch=4 * GROUP):
    rl = RLSection(
        per_device_train_batch_size=batch,
        num_generations=GROUP,
        max_completion_length=8,
        max_steps=1,
        logging_steps=1,
        rewards={"by_kind": 1.0},
        mgpo_lambda=1.0,
        dynamic_sampling=dynamic,
    )
    args = build_mgpo_config(rl, Path(out), "t", 0)
    args.dynamic_sampling_max_rounds = max_rounds
    # prompts of many lengths: rounds pad to different widths, which the batch must reconcile
    content = [f"Compute {'1+' * i}1." for i in range(len(kinds))]
    rows = [{"prompt": [{"role": "user", "content": c}], "kind": k} for c, k in zip(content, kinds, strict=True)]
    return MGPOTrainer(
        model=load_model(model_dir),
        reward_funcs=[by_kind],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(model_dir),
    )


def record(trainer):
    """Train one step, recording every generation round (`_score`) and the batch the seam returned."""
    rounds, batches = [], []
    score, seam = trainer._score, trainer._generate_and_score_completions

    def recorded_score(inputs):
        output, tokens = score(inputs)
        rounds.append(
            {
                "kinds": [row["kind"] for row in inputs],
                "rewards": trainer._gathered_rewards[:, 0].tolist(),
                "prompts": prompts(output),
                "completions": completions(output),
                "advantages": output["advantages"].tolist(),
                "width": output["prompt_ids"].shape[1],
            }
        )
        return output, tokens

    def recorded_seam(inputs):
        output = seam(inputs)
        rows = {"prompts": prompts(output), "completions": completions(output)}
        batches.append({**rows, "advantages": output["advantages"].tolist(), "tensors": output})
        return output

    trainer._score, trainer._generate_and_score_completions = recorded_score, recorded_seam
    trainer.train()
    return rounds, batches[0]


def completions(output) -> list[list[int]]:
    """Each row's completion tokens, without padding."""
    return [
        ids[mask.bool()].tolist()
        for ids, mask in zip(output["completion_ids"], output["completion_mask"], strict=True)
    ]


def prompts(output) -> list[list[int]]:
    """Each row's prompt tokens, without padding."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(output["prompt_ids"], output["prompt_mask"], strict=True)]


def expected_batch(rounds, needed):
    """Written out: the mixed groups in the order they were generated, the first `needed` of them, then as many
    right/wrong groups (in order) as are missing. Returns the rows' (prompt, completion, advantage), the number of
    groups
    sampled, and the number of zero-variance groups kept."""
    informative, flat = [], []
    for r in rounds:
        for g in range(len(r["kinds"]) // GROUP):
            rows = slice(g * GROUP, (g + 1) * GROUP)
            group = list(zip(r["prompts"][rows], r["completions"][rows], r["advantages"][rows], strict=True))
            varies = len(set(r["rewards"][rows])) > 1
            assert varies == (r["kinds"][g * GROUP] == "mixed")  # the reward does what it says
            (informative if varies else flat).append(group)
    filled = max(0, needed - len(informative))
    groups = informative[:needed] + flat[:filled]
    return [row for group in groups for row in group], len(informative) + len(flat), filled


@pytest.mark.parametrize("model", ["tiny_model_dir", "qwen_model_dir"])
def test_the_batch_holds_only_groups_that_vary_refilled_from_new_prompts(model, request, tmp_path):
    trainer = make_trainer(request.getfixturevalue(model), tmp_path, ["mixed", "right", "wrong"] * 4)
    rounds, batch = record(trainer)
    assert len(rounds) >= 2, "the first batch should have had a group without variance"
    assert len({r["width"] for r in rounds}) > 1, "the rounds should pad their prompts to different widths"
    rows, sampled, filled = expected_batch(rounds, needed=4)
    assert filled == 0
    # every row tensor regrouped alike: each row's prompt, completion and advantage are its round's
    assert batch["prompts"] == [p for p, _, _ in rows]
    assert batch["completions"] == [c for _, c, _ in rows]
    assert batch["advantages"] == pytest.approx([a for _, _, a in rows], abs=1e-6)
    assert all(a != 0 for a in batch["advantages"])  # every group carries signal
    assert (
        batch["tensors"]["completion_ids"].shape[0] == 4 * GROUP
        and batch["tensors"]["prompt_ids"].shape[0] == 4 * GROUP
    )
    assert batch["tensors"]["num_items_in_batch"].item() == batch["tensors"]["completion_mask"].sum().item()
    logged = trainer.state.log_history[0]
    zero_std = sum(r["kinds"][g] != "mixed" for r in rounds for g in range(0, len(r["kinds"]), GROUP))
    assert logged["dynamic_sampling/dropped_frac"] == pytest.approx(zero_std / sampled)
    assert logged["dynamic_sampling/rounds"] == len(rounds)
    assert logged["dynamic_sampling/sampled_groups"] == sampled
    assert (logged["dynamic_sampling/capped"], logged["dynamic_sampling/zero_std_kept"]) == (0.0, 0.0)
    generated = sum(len(c) for r in rounds for c in r["completions"])
    assert trainer.tokens_generated == generated
    assert (
        trainer.tokens_trained
        == sum(len(c) for c in batch["completions"]) + batch["tensors"]["prompt_mask"].sum().item()
    )


def test_the_cap_ends_the_rounds_and_keeps_zero_variance_groups(tiny_model_dir, tmp_path, caplog):
    trainer = make_trainer(
        tiny_model_dir, tmp_path, ["right", "wrong", "right", "mixed"] + ["wrong"] * 8, max_rounds=2
    )
    with caplog.at_level(logging.WARNING, logger="ssp.signal.trainer"):
        rounds, batch = record(trainer)
    assert len(rounds) == 2
    rows, sampled, filled = expected_batch(rounds, needed=4)
    assert filled > 0
    assert batch["prompts"] == [p for p, _, _ in rows]
    assert batch["completions"] == [c for _, c, _ in rows]
    assert batch["advantages"] == pytest.approx([a for _, _, a in rows], abs=1e-6)
    assert batch["tensors"]["completion_ids"].shape[0] == 4 * GROUP
    logged = trainer.state.log_history[0]
    zero_std = sum(r["kinds"][g] != "mixed" for r in rounds for g in range(0, len(r["kinds"]), GROUP))
    assert logged["dynamic_sampling/dropped_frac"] == pytest.approx((zero_std - filled) / sampled)
    assert (logged["dynamic_sampling/rounds"], logged["dynamic_sampling/capped"]) == (2.0, 1.0)
    assert logged["dynamic_sampling/zero_std_kept"] == filled
    assert f"{filled} of the batch's groups have no reward variance after 2 rounds" in caplog.text


def test_with_every_group_varying_the_step_is_the_step_without_it(tiny_model_dir, tmp_path):
    """Nothing to drop: one round, and the batch (hence the update) is exactly the one TRL built."""
    runs = {}
    for dynamic in (False, True):
        trainer = make_trainer(tiny_model_dir, tmp_path / str(dynamic), ["mixed"] * 8, dynamic=dynamic)
        runs[dynamic] = (trainer, *record(trainer))
    (off, off_rounds, off_batch), (on, on_rounds, on_batch) = runs[False], runs[True]
    assert len(off_rounds) == len(on_rounds) == 1
    assert set(off_batch["tensors"]) == set(on_batch["tensors"])
    for key, value in off_batch["tensors"].items():
        assert torch.equal(value, on_batch["tensors"][key]), key
    for (name, a), (_, b) in zip(off.model.named_parameters(), on.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert on.state.log_history[0]["dynamic_sampling/dropped_frac"] == 0.0
    assert not any(key.startswith("dynamic_sampling/") for key in off.state.log_history[0])
    assert (off.tokens_generated, off.tokens_trained) == (on.tokens_generated, on.tokens_trained)


def test_max_rounds_must_be_at_least_one(tmp_path):
    args = build_mgpo_config(RLSection(dynamic_sampling=True), tmp_path, "t", 0)
    assert (args.dynamic_sampling, args.dynamic_sampling_max_rounds) == (True, 8)  # the recipe key passes through
    assert (
        build_mgpo_config(RLSection(dynamic_sampling_max_rounds=3), tmp_path, "t", 0).dynamic_sampling_max_rounds == 3
    )
    with pytest.raises(ValueError, match="dynamic_sampling_max_rounds must be >= 1, got 0"):
        build_mgpo_config(RLSection(dynamic_sampling_max_rounds=0), tmp_path, "t", 0)
    with pytest.raises(RecipeError, match="rl.dynamic_sampling_max_rounds"):  # a recipe is refused as it loads
        load_recipe(
            REPO / "recipes" / "demo" / "rl.yaml", ["model.name_or_path=tiny", "rl.dynamic_sampling_max_rounds=0"]
        )


@pytest.mark.slow
def test_two_processes_with_groups_straddling_them(tiny_model_dir, tmp_path):
    """6 completions per process, groups of 4: every round's groups are gathered, the batch is the same on both
    ranks' view, and each rank trains on its own 6 rows of it."""
    from test_launch import zero2_launch

    command = zero2_launch(__file__, str(tiny_model_dir), str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["rounds"]) == len(ranks[1]["rounds"]) >= 2
    # a round in global order: rank 0's rows, then rank 1's
    rounds = [
        {key: a[key] + b[key] for key in ("kinds", "prompts", "completions", "advantages")} | {"rewards": a["rewards"]}
        for a, b in zip(ranks[0]["rounds"], ranks[1]["rounds"], strict=True)
    ]
    assert all(a["rewards"] == b["rewards"] for a, b in zip(ranks[0]["rounds"], ranks[1]["rounds"], strict=True))
    rows, _, filled = expected_batch(rounds, needed=3)
    assert filled == 0
    got = ranks[0]["batch"] + ranks[1]["batch"]
    assert [row[:2] for row in got] == [list(row[:2]) for row in rows]
    assert [a for _, _, a in got] == pytest.approx([a for _, _, a in rows], abs=1e-6)
    assert all(len(r["batch"]) == 6 for r in ranks)
    assert ranks[0]["num_items_in_batch"] == ranks[1]["num_items_in_batch"] == sum(len(c) for _, c, _ in got)


def two_process_step(model_dir: str, out: str) -> None:
    """One step on each of 2 processes (6 rows each: a group straddles them)."""
    kinds = ["mixed", "right", "wrong", "mixed", "wrong", "right"] * 2
    trainer = make_trainer(model_dir, out, kinds, batch=6)
    rounds, batch = record(trainer)
    rows = list(zip(batch["prompts"], batch["completions"], batch["advantages"], strict=True))
    result = {"rounds": rounds, "batch": rows, "num_items_in_batch": batch["tensors"]["num_items_in_batch"].item()}
    Path(out, f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    two_process_step(sys.argv[1], sys.argv[2])
