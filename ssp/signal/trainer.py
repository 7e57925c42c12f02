"""GRPOTrainer with MGPO: each question's advantages scaled by w_ME of its group accuracy.

TRL 1.16 has no public advantage hook. The seam is `_generate_and_score_completions`, which returns this
process's slice of the advantages. `_calculate_rewards` returns the rewards gathered over all processes, so the
subclass keeps them, computes one weight per group from the whole group (groups may straddle processes), slices the
weights like TRL slices the advantages, and rescales. TRL is pinned; `tests/test_mgpo_trainer.py` recomputes the
weighted advantages of a real step independently.

p is each completion's own correctness: a dataset column `correctness_reward` names, per row, the reward function
whose score of 1 means correct (math rows `math_verify`, code rows `code_tests`), so a stage that mixes math and
code weights each group by its own domain's accuracy. Rows without the column use the config's
`correctness_reward`.

The trainer reads its settings (`mgpo_lambda`, `correctness_reward`) from its `args`, an `MGPOConfig`
(ssp.signal.config), as GRPOTrainer reads GRPO's from a GRPOConfig.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer

from ssp.signal.config import MGPOConfig
from ssp.signal.mgpo import mgpo_weight


def group_accuracy(correctness: torch.Tensor, group_size: int) -> torch.Tensor:
    """p per group: the fraction of its completions whose correctness reward is 1 (None/NaN counts as wrong)."""
    correct = torch.nan_to_num(correctness, nan=0.0) >= 1.0
    return correct.view(-1, group_size).float().mean(dim=1)


class MGPOTrainer(GRPOTrainer):
    """`GRPOTrainer` plus MGPO weighting. `args.mgpo_lambda = 0` leaves every advantage exactly as GRPO computes it.
    `args.mgpo_lambda` is checked where it is used (`mgpo_weight`); a recipe's is checked as it loads."""

    def __init__(self, model, reward_funcs, args: MGPOConfig, **kwargs):
        if not isinstance(args, MGPOConfig):
            raise TypeError(f"MGPOTrainer's args is an MGPOConfig (ssp.signal.config), got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)
        correctness = args.correctness_reward
        if correctness is None and len(self.reward_func_names) == 1:
            correctness = self.reward_func_names[0]
        if correctness is not None:
            self._reward_column(correctness)  # an unknown default is refused now, not at the first step
        self.default_correctness = correctness
        self._gathered_rewards: torch.Tensor | None = None
        self.tokens_generated = 0  # completion tokens sampled, all processes
        self.tokens_trained = 0  # prompt + completion tokens the policy was trained on, all processes

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # all processes, in global order: groups are contiguous rows
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        correctness = self._gathered_rewards.gather(1, self._correctness_columns(inputs)[:, None]).squeeze(1)
        p = group_accuracy(correctness, group_size)
        weights = mgpo_weight(p, self.args.mgpo_lambda).to(output["advantages"].dtype)
        per_completion = weights.repeat_interleave(group_size)
        local = output["advantages"].shape[0]
        process_slice = slice(self.accelerator.process_index * local, (self.accelerator.process_index + 1) * local)
        output["advantages"] = output["advantages"] * per_completion[process_slice]
        self._log_mgpo(mode, p, weights, per_completion)
        if mode == "train":
            counts = torch.stack([output["completion_mask"].sum(), output["prompt_mask"].sum()]).to(torch.long)
            completion_tokens, prompt_tokens = self.accelerator.gather(counts).view(-1, 2).sum(dim=0).tolist()
            self.tokens_generated += completion_tokens
            self.tokens_trained += (completion_tokens + prompt_tokens) * self.args.num_iterations
        return output

    def _correctness_columns(self, inputs) -> torch.Tensor:
        """For every completion of every process (the gathered order), the column of its correctness reward."""
        columns = [self._reward_column(example.get("correctness_reward") or self.default_correctness)
                   for example in inputs]  # fmt: skip
        local = torch.tensor(columns, dtype=torch.long, device=self._gathered_rewards.device)
        return self.accelerator.gather(local)

    def _reward_column(self, name: str | None) -> int:
        """The column of reward `name` among the trainer's rewards, which must hold it."""
        if name not in self.reward_func_names:
            raise ValueError(f"correctness reward {name!r} is not among the rewards {self.reward_func_names}")
        return self.reward_func_names.index(name)

    def _log_mgpo(self, mode: str, p: torch.Tensor, weights: torch.Tensor, per_completion: torch.Tensor) -> None:
        """Weights, the distribution of p, and the advantages TRL logged replaced by the weighted ones."""
        metrics = self._metrics[mode]
        metrics["mgpo/weight_mean"].append(weights.mean().item())
        metrics["mgpo/weight_min"].append(weights.min().item())
        quantiles = torch.quantile(p.float(), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], device=p.device))
        for name, value in zip(("min", "q25", "median", "q75", "max"), quantiles.tolist(), strict=True):
            metrics[f"mgpo/p_{name}"].append(value)
        metrics["mgpo/p_mean"].append(p.mean().item())
        metrics["mgpo/frac_p0"].append((p == 0).float().mean().item())
        metrics["mgpo/frac_p1"].append((p == 1).float().mean().item())
        # TRL appended the unweighted advantages of every process to its completion log; swap in the weighted ones.
        logged = self._logs["advantages"]
        count = min(len(logged), per_completion.numel())  # the log is a bounded deque
        unweighted = [logged.pop() for _ in range(count)][::-1]
        weighted = torch.tensor(unweighted, dtype=per_completion.dtype) * per_completion[-count:].cpu()
        logged.extend(weighted.tolist())
        metrics["mgpo/advantage_abs_mean"].append(weighted.abs().mean().item())
        metrics["mgpo/advantage_std"].append(weighted.std().item() if weighted.numel() > 1 else 0.0)
