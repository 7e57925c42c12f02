"""MGPO on real GRPO steps of a tiny model: lam = 0 is GRPO, and the weighted advantages recomputed by hand."""

import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from ssp.config import RLSection
from ssp.models import load_model, load_tokenizer
from ssp.rewards.extract import completion_text
from ssp.signal.config import build_mgpo_config
from ssp.signal.trainer import MGPOTrainer

GROUP = 4


def even_length(completions, **kwargs):
    """About half the completions of an untrained model count as correct: enough spread for p to vary."""
    return [float(len(completion_text(c)) % 2 == 0) for c in completions]


def odd_length(completions, **kwargs):
    return [float(len(completion_text(c)) % 2 == 1) for c in completions]


def short(completions, **kwargs):
    return [1.0 / (1 + len(completion_text(c))) for c in completions]


def make_trainer(cls, model_dir, tmp_path, lam=None, seed=0, mixed=False):
    """One GRPO step. `mixed`: rows alternate between two correctness rewards, as a stage mixing math and code."""
    second = odd_length if mixed else short
    rl = RLSection(
        per_device_train_batch_size=4 * GROUP,
        num_generations=GROUP,
        max_completion_length=8,
        max_steps=1,
        logging_steps=1,
        rewards={"even_length": 1.0, second.__name__: 0.5},
        mgpo_lambda=1.0 if lam is None else lam,
    )
    args = build_mgpo_config(rl, tmp_path / f"{cls.__name__}-{lam}-{mixed}", "test", seed)
    if lam is not None:
        args.correctness_reward = "even_length"
    prompts = [{"prompt": [{"role": "user", "content": f"Compute {i}*(1+2)-3."}]} for i in range(8)]
    if mixed:
        for i, prompt in enumerate(prompts):
            prompt["correctness_reward"] = "even_length" if i % 2 == 0 else "odd_length"
    trainer = cls(
        model=load_model(model_dir),
        reward_funcs=[even_length, second],
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=load_tokenizer(model_dir),
    )
    captured = []
    original = trainer._generate_and_score_completions

    def capture(inputs):
        output = original(inputs)
        captured.append(
            {
                "advantages": output["advantages"].clone(),
                "completion_ids": output["completion_ids"].clone(),
                "correctness_reward": [example.get("correctness_reward") for example in inputs],
            }
        )
        return output

    trainer._generate_and_score_completions = capture
    trainer.train()
    return trainer, captured[0]


def grpo_advantages(rewards_per_func: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """TRL's group-normalised advantages, written out: (r - mean) / (unbiased std + 1e-4)."""
    rewards = (rewards_per_func * torch.tensor(weights)).sum(dim=1).view(-1, GROUP)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # Bessel-corrected, like trl's nanstd
    return ((rewards - mean) / (std + 1e-4)).flatten()


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mgpo")
    return {
        "grpo": make_trainer(GRPOTrainer, tiny_model_dir, tmp),
        "lam0": make_trainer(MGPOTrainer, tiny_model_dir, tmp, lam=0.0),
        "lam2": make_trainer(MGPOTrainer, tiny_model_dir, tmp, lam=2.0),
        "mixed": make_trainer(MGPOTrainer, tiny_model_dir, tmp, lam=2.0, mixed=True),
    }


def test_lambda_zero_reproduces_grpo_exactly(runs):
    (grpo, grpo_step), (mgpo, mgpo_step) = runs["grpo"], runs["lam0"]
    assert torch.equal(grpo_step["completion_ids"], mgpo_step["completion_ids"])  # same seed, same rollouts
    assert torch.equal(grpo_step["advantages"], mgpo_step["advantages"])
    for (name, a), (_, b) in zip(grpo.model.named_parameters(), mgpo.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name  # and the same update


def test_weighted_advantages_recomputed_from_the_rewards_of_a_real_step(runs):
    trainer, step = runs["lam2"]
    rewards = trainer._gathered_rewards.cpu()
    assert rewards.shape == (16, 2)
    p = (rewards[:, 0] >= 1.0).float().view(-1, GROUP).mean(dim=1)
    assert len(set(p.tolist())) > 1, "the step should have groups of different accuracy"
    deviation = [sum(x * math.log(2 * x) for x in (q, 1 - q) if x > 0) for q in p.tolist()]
    weights = torch.tensor([math.exp(-2.0 * d) for d in deviation]).repeat_interleave(GROUP)
    expected = grpo_advantages(rewards, [1.0, 0.5]) * weights
    assert torch.allclose(step["advantages"].cpu(), expected, atol=1e-5)
    # same rollouts as plain GRPO, so the MGPO advantages are GRPO's times the weights
    assert torch.equal(runs["grpo"][1]["completion_ids"], step["completion_ids"])
    assert torch.allclose(step["advantages"], runs["grpo"][1]["advantages"] * weights, atol=1e-6)


def test_mgpo_metrics_and_weighted_advantage_log(runs):
    trainer, step = runs["lam2"]
    logged = trainer.state.log_history[0]
    for key in ("mgpo/weight_mean", "mgpo/p_median", "mgpo/frac_p0", "mgpo/frac_p1", "mgpo/advantage_abs_mean"):
        assert key in logged, key
    p = (trainer._gathered_rewards[:, 0].cpu() >= 1.0).float().view(-1, GROUP).mean(dim=1)
    assert logged["mgpo/p_mean"] == pytest.approx(p.mean().item())
    assert logged["mgpo/frac_p0"] == pytest.approx((p == 0).float().mean().item())
    assert logged["mgpo/advantage_abs_mean"] == pytest.approx(step["advantages"].abs().mean().item(), rel=1e-5)
    # the completions log carries the weighted advantages, not the ones TRL computed before weighting
    assert list(trainer._logs["advantages"]) == pytest.approx(step["advantages"].tolist(), abs=1e-6)
    assert trainer.tokens_generated > 0 and trainer.tokens_trained > trainer.tokens_generated


def test_unknown_correctness_reward_is_refused(tiny_model_dir, tmp_path):
    args = build_mgpo_config(RLSection(max_steps=1), tmp_path, "t", 0)
    args.correctness_reward = "nope"
    with pytest.raises(ValueError, match="correctness reward 'nope' is not among the rewards"):
        MGPOTrainer(
            model=load_model(tiny_model_dir),
            reward_funcs=[even_length],
            args=args,
            train_dataset=Dataset.from_list([{"prompt": "x"}]),
            processing_class=load_tokenizer(tiny_model_dir),
        )


def test_a_mixed_stage_weights_each_group_by_its_own_correctness_reward(runs):
    """Groups of "math" rows take p from even_length, groups of "code" rows from odd_length (a code row's math
    reward would be None, so one reward for all would give every code group p = 0)."""
    trainer, step = runs["mixed"]
    rewards = trainer._gathered_rewards.cpu()
    names = step["correctness_reward"]
    assert set(names) == {"even_length", "odd_length"}
    column = torch.tensor([0 if name == "even_length" else 1 for name in names])
    correct = rewards[torch.arange(len(names)), column]
    p = (correct >= 1.0).float().view(-1, GROUP).mean(dim=1)
    assert all(len(set(names[g * GROUP : (g + 1) * GROUP])) == 1 for g in range(len(names) // GROUP))
    deviation = [sum(x * math.log(2 * x) for x in (q, 1 - q) if x > 0) for q in p.tolist()]
    weights = torch.tensor([math.exp(-2.0 * d) for d in deviation]).repeat_interleave(GROUP)
    expected = grpo_advantages(rewards, [1.0, 0.5]) * weights
    assert torch.allclose(step["advantages"].cpu(), expected, atol=1e-5)
    # with one correctness reward for every row, the odd_length groups would get other weights
    one_reward = (rewards[:, 0] >= 1.0).float().view(-1, GROUP).mean(dim=1)
    assert not torch.equal(one_reward, p)
