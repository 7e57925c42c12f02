"""GRPOTrainer with MGPO: each question's advantages scaled by w_ME of its group accuracy; optionally DAPO's
dynamic sampling.

TRL 1.16 has no public advantage hook. The seam is `_generate_and_score_completions`, which returns this
process's slice of the advantages. `_calculate_rewards` returns the rewards gathered over all processes, so the
subclass keeps them, computes one weight per group from the whole group (groups may straddle processes), slices the
weights like TRL slices the advantages, and rescales. TRL is pinned; `tests/test_mgpo_trainer.py` recomputes the
weighted advantages of a real step independently.

p is each completion's own correctness: a dataset column `correctness_reward` names, per row, the reward function
whose score of 1 means correct (math rows `math_verify`, code rows `code_tests`), so a stage that mixes math and
code weights each group by its own domain's accuracy. Rows without the column use the config's
`correctness_reward`.

Dynamic sampling (`dynamic_sampling`): TRL's `_prepare_inputs` calls the seam once per generation batch
(per_device_train_batch_size x steps_per_generation rows per process), then shuffles the result and buffers it as
steps_per_generation micro-batches; the seam is the last place that sees the whole batch before it is buffered, so
it replaces it there. A group whose weighted reward has zero variance (TRL's own group std, so a group whose
advantages are all 0) is dropped; while fewer informative groups than the batch holds are kept and fewer than
`dynamic_sampling_max_rounds` rounds ran, new prompts are drawn and scored by TRL's own code (and weighted by
MGPO). Groups may straddle processes, and the groups one process keeps need not fill its own slice, so each
round's rows are gathered from all processes (padded to common widths): every process then holds the same pool,
takes the same decisions without agreeing on anything, and returns its slice of the batch (the first kept groups in
order), exactly as many rows as TRL gave it. Keeping each process's groups on it instead would need whole groups
per process and make processes already full generate in step with the others for nothing. New prompts come from a
permutation of the training set seeded by the seed and the step: the same on every process, and again after a
resume. A round draws as many prompts as groups are missing, scaled by the informative share seen so far, rounded
so every process gets an equal, whole share of rows (TRL's collectives and vLLM's server mode need equal counts and
contiguous groups). A first round with nothing to drop is TRL's batch, untouched. At the cap the batch is
completed with zero-variance groups and `dynamic_sampling/capped` logs it. Each group keeps the advantages of its
round (with `scale_rewards: batch`, that round's scale).

The trainer reads its settings (`mgpo_lambda`, `correctness_reward`, `dynamic_sampling`,
`dynamic_sampling_max_rounds`) from its `args`, an `MGPOConfig` (ssp.signal.config), as GRPOTrainer reads GRPO's
from a GRPOConfig.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator

import datasets
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from ssp.signal.config import MGPOConfig
from ssp.signal.mgpo import mgpo_weight

logger = logging.getLogger(__name__)

# The per-row tensors of TRL's batch that dynamic sampling regroups, with the side their padding is on; a padding
# value of None is the tokenizer's pad id. Anything else (images) is refused rather than silently misaligned.
LEFT_PADDED = {"prompt_ids": None, "prompt_mask": 0}
RIGHT_PADDED = {
    "completion_ids": None,
    "completion_mask": 0,
    "tool_mask": 1,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "importance_sampling_ratio": 1.0,
}


def group_accuracy(correctness: torch.Tensor, group_size: int) -> torch.Tensor:
    """p per group: the fraction of its completions whose correctness reward is 1 (None/NaN counts as wrong)."""
    correct = torch.nan_to_num(correctness, nan=0.0) >= 1.0
    return correct.view(-1, group_size).float().mean(dim=1)


def informative_groups(rewards_per_func: torch.Tensor, weights: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group, whether its weighted reward varies, as TRL's group std sees it (a row every reward scored None is
    left out; a group with fewer than two scored rows does not vary)."""
    rewards = (rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    std = torch.nan_to_num(nanstd(rewards.view(-1, group_size), dim=1), nan=0.0)
    return ~torch.isclose(std, torch.zeros_like(std))


def select_groups(rows: dict[str, torch.Tensor], groups: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
    """The rows of `groups` (indices of groups of `group_size` consecutive rows)."""
    index = (groups[:, None] * group_size + torch.arange(group_size, device=groups.device)).flatten()
    return {key: value[index.to(value.device)] for key, value in rows.items()}


def concat_rows(parts: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """The parts' rows one after the other, each key padded to its widest part on its side."""
    joined = {}
    for key in parts[0]:
        values = [part[key] for part in parts]
        if values[0].dim() > 1:
            width = max(value.shape[1] for value in values)
            left = key in LEFT_PADDED
            fill = (LEFT_PADDED if left else RIGHT_PADDED)[key]
            fill = pad_id if fill is None else fill
            values = [
                F.pad(v, (width - v.shape[1], 0) if left else (0, width - v.shape[1]), value=fill) for v in values
            ]
        joined[key] = torch.cat(values)
    return joined


class MGPOTrainer(GRPOTrainer):
    """`GRPOTrainer` plus MGPO weighting. `args.mgpo_lambda = 0` leaves every advantage exactly as GRPO computes it.
    `args.mgpo_lambda` is checked where it is used (`mgpo_weight`); a recipe's is checked as it loads."""

    def __init__(self, model, reward_funcs, args: MGPOConfig, **kwargs):
        if not isinstance(args, MGPOConfig):
            raise TypeError(f"MGPOTrainer's args is an MGPOConfig (ssp.signal.config), got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)
        if args.dynamic_sampling and isinstance(self.train_dataset, IterableDataset):
            raise ValueError("dynamic_sampling draws new prompts by index: the training set cannot be an iterable")
        correctness = args.correctness_reward
        if correctness is None and len(self.reward_func_names) == 1:
            correctness = self.reward_func_names[0]
        if correctness is not None:
            self._reward_column(correctness)  # an unknown default is refused now, not at the first step
        self.default_correctness = correctness
        self._gathered_rewards: torch.Tensor | None = None
        self._refill_dataset = None
        self.tokens_generated = 0  # completion tokens sampled, all processes
        self.tokens_trained = 0  # prompt + completion tokens the policy was trained on, all processes

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # all processes, in global order: groups are contiguous rows
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output, tokens = self._score(inputs)
        if self.model.training:
            if self.args.dynamic_sampling:
                output, tokens = self._dynamic_batch(output, tokens)
            self.tokens_trained += sum(tokens) * self.args.num_iterations
        return output

    def _score(self, inputs) -> tuple[dict, tuple[int, int] | None]:
        """TRL's batch for `inputs` with MGPO-weighted advantages, and in training its (completion, prompt) tokens
        over all processes."""
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
        if mode != "train":
            return output, None
        counts = torch.stack([output["completion_mask"].sum(), output["prompt_mask"].sum()]).to(torch.long)
        completion_tokens, prompt_tokens = self.accelerator.gather(counts).view(-1, 2).sum(dim=0).tolist()
        self.tokens_generated += completion_tokens
        return output, (completion_tokens, prompt_tokens)

    def _dynamic_batch(self, output: dict, tokens: tuple[int, int]) -> tuple[dict, tuple[int, int]]:
        """The batch of `output`'s size (its `tokens` trained) made of groups with reward variance, refilled from new
        prompts for at most `dynamic_sampling_max_rounds` rounds, then completed with zero-variance groups (module
        docstring); the batch's (completion, prompt) tokens over all processes."""
        group_size, processes = self.num_generations, self.accelerator.num_processes
        local = output["advantages"].shape[0]
        needed = local * processes // group_size  # groups in the whole generation batch
        prompts = self._refill_prompts()
        kept, spare = [], []  # gathered rows of informative groups, and of zero-variance ones for the cap
        n_kept = n_spare = n_informative = sampled = rounds = 0
        while True:
            rounds += 1
            informative = informative_groups(self._gathered_rewards, self.reward_weights, group_size)
            if rounds == 1 and bool(informative.all()):  # nothing to drop: TRL's batch as it is, nothing moved
                self._log_dynamic_sampling(1, needed, 0, 0)
                return output, tokens
            rows = self._gather_rows(output)
            sampled += informative.numel()
            n_informative += int(informative.sum())
            take = informative.nonzero().flatten()[: needed - n_kept]
            kept.append(select_groups(rows, take, group_size))
            n_kept += take.numel()
            rest = (~informative).nonzero().flatten()[: needed - n_spare]
            spare.append(select_groups(rows, rest, group_size))
            n_spare += rest.numel()
            if n_kept == needed or rounds == self.args.dynamic_sampling_max_rounds:
                break
            # as many groups as are missing, at the informative share seen so far; an equal whole share per process
            want = min(needed, math.ceil((needed - n_kept) * sampled / max(n_informative, 1)))
            step = processes // math.gcd(group_size, processes)
            output, _ = self._score(self._refill_inputs(prompts, math.ceil(want / step) * step))
        filled = needed - n_kept
        batch = concat_rows(kept + spare, self._tokenizer.pad_token_id)
        batch = {key: value[: needed * group_size] for key, value in batch.items()}
        self._log_dynamic_sampling(rounds, sampled, sampled - n_informative - filled, filled)
        loss_mask = batch["completion_mask"] * batch["tool_mask"] if "tool_mask" in batch else batch["completion_mask"]
        tokens = (int(batch["completion_mask"].sum()), int(batch["prompt_mask"].sum()))
        rank = self.accelerator.process_index
        local_batch = {key: value[rank * local : (rank + 1) * local] for key, value in batch.items()}
        local_batch["num_items_in_batch"] = loss_mask.sum()  # TRL's: the loss tokens of every process's batch
        return local_batch, tokens

    def _gather_rows(self, output: dict) -> dict[str, torch.Tensor]:
        """Every process's rows of `output`, in global order, each key padded to the widest process's."""
        rows = {}
        for key in sorted(output):  # the same order on every process: these are collectives
            value = output[key]
            if key == "num_items_in_batch":
                continue  # recomputed for the batch that is kept
            if key == "advantages":
                rows[key] = self.accelerator.gather(value)
                continue
            if key not in LEFT_PADDED and key not in RIGHT_PADDED:
                raise NotImplementedError(f"dynamic_sampling regroups text batches; TRL's batch has {key!r}")
            fill = {**LEFT_PADDED, **RIGHT_PADDED}[key]
            fill = self._tokenizer.pad_token_id if fill is None else fill
            padded = self.accelerator.pad_across_processes(value, dim=1, pad_index=fill, pad_first=key in LEFT_PADDED)
            rows[key] = self.accelerator.gather(padded)
        return rows

    def _refill_prompts(self) -> Iterator[int]:
        """Training-set indices in a random order, the same on every process and again after a resume; a new
        permutation follows when one runs out."""
        if self._refill_dataset is None:  # with the columns TRL's dataloader keeps
            dataset = self.train_dataset
            if isinstance(dataset, datasets.Dataset):
                dataset = self._remove_unused_columns(dataset, description="dynamic sampling")
            self._refill_dataset = dataset
        accumulation = self.args.gradient_accumulation_steps
        micro_step = self.state.global_step * accumulation + self._step % accumulation  # TRL's _step restarts at 0
        # not TRL's sampler's permutation (seeded by the seed alone), and another one at every step
        key = hashlib.sha256(f"dynamic sampling {self.args.seed} {micro_step}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") % 2**63)
        while True:
            yield from torch.randperm(len(self._refill_dataset), generator=generator).tolist()

    def _refill_inputs(self, order: Iterator[int], prompts: int) -> list[dict]:
        """This process's share of `prompts` new prompts, each repeated num_generations times, as TRL's sampler
        lays them out (the groups contiguous, in process order)."""
        indices = [next(order) for _ in range(prompts)]
        share = prompts * self.num_generations // self.accelerator.num_processes
        start = self.accelerator.process_index * share
        rows = range(start, start + share)
        return [dict(self._refill_dataset[indices[row // self.num_generations]]) for row in rows]

    def _log_dynamic_sampling(self, rounds: int, sampled: int, dropped: int, filled: int) -> None:
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/sampled_groups"].append(float(sampled))
        metrics["dynamic_sampling/dropped_frac"].append(dropped / sampled)
        metrics["dynamic_sampling/zero_std_kept"].append(float(filled))
        metrics["dynamic_sampling/capped"].append(float(filled > 0))
        if filled and self.accelerator.is_main_process:
            logger.warning(
                "dynamic sampling: %d of the batch's groups have no reward variance after %d rounds "
                "(dynamic_sampling_max_rounds); training on them",
                filled,
                rounds,
            )

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
