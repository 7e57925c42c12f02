"""Each stage's plan: SFT, probing and evaluation, and each RL curriculum stage (docs/plan.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ssp.config import RecipeError
from ssp.data.benchmarks import BENCHMARK_PREFIX, BENCHMARKS
from ssp.data.records import read_records
from ssp.plan.formulas import (
    CHARS_PER_TOKEN,
    DEVICES,
    GIB,
    Architecture,
    Assumptions,
    activations_gib,
    generation_flops,
    generation_hours,
    time_hours,
    training_flops,
    training_states_gib,
)


@dataclass
class StagePlan:
    name: str
    kind: str  # sft | probe | eval | rl
    tokens_trained: float = 0.0
    tokens_generated: float = 0.0
    train_flops: float = 0.0
    generation_flops: float = 0.0
    memory_gib: dict[str, float] = field(default_factory=dict)
    device_hours: float = 0.0
    dollars: float = 0.0
    fits: bool = True
    problems: list[str] = field(default_factory=list)  # what does not fit, with the numbers and a fix
    notes: list[str] = field(default_factory=list)  # the assumptions this stage rests on
    steps: int = 0  # optimizer steps (SFT: the probing plan counts checkpoints from them)

    @property
    def peak_gib(self) -> float:
        return sum(self.memory_gib.values())


# --------------------------------------------------------------------------------------------------------------
# Data sizes
# --------------------------------------------------------------------------------------------------------------


def check_length(plan: StagePlan, arch: Architecture, key: str, tokens: float) -> None:
    if tokens > arch.max_position_embeddings:
        plan.fits = False
        plan.problems.append(
            f"{key}: {tokens:,.0f} tokens exceed the model's context of {arch.max_position_embeddings:,} positions; "
            f"set model.context.max_position_embeddings (and rope_theta or rope_scaling)"
        )


def _fits(plan: StagePlan, usable: float, what: str, fix: str) -> None:
    if plan.peak_gib > usable:
        plan.fits = False
        plan.problems.append(f"{what}: {plan.peak_gib:.1f} GiB per GPU > {usable:.1f} GiB usable; {fix}")


def _local_records(source, key: str) -> list[dict] | None:
    """The records of a local JSONL or JSON file, read as the stages read them (a file they cannot read is the
    same one-line error, naming `key`); None for anything else, which the plan does not open."""
    path = Path(source.path).expanduser()
    if source.path == "synthetic" or not path.is_file() or path.suffix not in (".jsonl", ".json"):
        return None
    return read_records(source, key)


def count_problems(sources, task, assumptions: Assumptions, notes: list[str], key: str) -> int:
    """Problems in `sources` (the recipe's `key`, e.g. `data.test`): counted in local files, else assumed."""
    total = 0
    for i, source in enumerate(sources):
        records = _local_records(source, f"{key}.{i}")
        if source.path == "synthetic":
            count = {"train": task.train_size, "probe": task.probe_size * len(task.domains)}.get(
                source.split, task.test_size * len(task.domains)
            )
        elif source.path.startswith(BENCHMARK_PREFIX):
            spec = BENCHMARKS.get(source.path[len(BENCHMARK_PREFIX) :])
            if spec is None:
                raise RecipeError(f"{source.path}: unknown benchmark (known: {', '.join(BENCHMARKS)})")
            count = min(spec.size, source.limit) if source.limit else spec.size
        elif records is not None:
            count = len({str(r.get(source.fields.problem)) for r in records})
            if source.limit is not None:
                domains = {r.get(source.fields.domain) for r in records} if source.fields.domain else {None}
                count = min(count, source.limit * max(1, len(domains)))
        else:
            count = source.limit * (len(source.domains) or 1) if source.limit else assumptions.problems
            notes.append(f"{source.path}: not on disk, assumed {count:,} problems")
        total += count
    return total


def sft_data_size(recipe, assumptions: Assumptions, notes: list[str]) -> tuple[int, float]:
    """(examples, mean tokens per example) of the SFT set."""
    examples, characters, counted = 0, 0, True
    for i, source in enumerate(recipe.data.train):
        records = _local_records(source, f"data.train.{i}")
        if records is None:
            counted = False
            break
        for record in records:
            solutions = record.get(source.fields.solution) or []
            solutions = [solutions] if isinstance(solutions, str) else solutions
            paths = solutions[: recipe.data.paths_per_problem]
            examples += len(paths)
            characters += sum(len(str(record.get(source.fields.problem, ""))) + len(s) for s in paths)
    if counted and examples:
        mean = min(recipe.sft.max_length, characters / examples / CHARS_PER_TOKEN)
        notes.append(f"SFT data counted on disk: {examples:,} examples, about {mean:,.0f} tokens each")
        return examples, mean
    mean = assumptions.sft_fill * recipe.sft.max_length
    notes.append(
        f"SFT data not on disk: assumed {assumptions.sft_examples:,} examples of {mean:,.0f} tokens "
        f"(--sft-examples, --sft-fill)"
    )
    return assumptions.sft_examples, mean


# --------------------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------------------


def plan_sft(recipe, arch: Architecture, assumptions: Assumptions, usable: float) -> StagePlan:
    plan = StagePlan("sft", "sft")
    sft = recipe.sft
    examples, mean = sft_data_size(recipe, assumptions, plan.notes)
    per_step = sft.per_device_train_batch_size * sft.gradient_accumulation_steps * assumptions.gpus
    steps = sft.max_steps if sft.max_steps > 0 else math.ceil(sft.num_train_epochs * examples / per_step)
    plan.notes.append(f"{steps:,} optimizer steps of {per_step:,} sequences")
    plan.tokens_trained = steps * per_step * mean
    plan.train_flops = training_flops(arch, plan.tokens_trained, mean)
    plan.memory_gib = training_states_gib(arch, assumptions)
    # Sequences are padded to the longest of the micro-batch; plan for the longest the recipe allows.
    plan.memory_gib.update(
        activations_gib(arch, sft.per_device_train_batch_size, sft.max_length, sft.gradient_checkpointing)
    )
    plan.device_hours = time_hours(plan.train_flops, assumptions, assumptions.train_mfu)
    check_length(plan, arch, "sft.max_length", sft.max_length)
    fix = "lower sft.per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch)"
    if not sft.gradient_checkpointing:
        fix = "set sft.gradient_checkpointing: true, or " + fix
    _fits(plan, usable, f"micro-batch of {sft.per_device_train_batch_size} x {sft.max_length:,} tokens", fix)
    plan.steps = steps
    return plan


def plan_generation(
    name: str,
    kind: str,
    arch: Architecture,
    assumptions: Assumptions,
    usable: float,
    problems: int,
    sampling,
    models: int,
    backend: str,
) -> StagePlan:
    """Sampling `models` models on `problems` problems, n samples each, spread over every GPU."""
    plan = StagePlan(name, kind)
    prompt = assumptions.prompt_tokens
    completion = assumptions.completion_fill * sampling.max_new_tokens
    plan.tokens_generated = models * problems * sampling.n * completion
    plan.generation_flops = generation_flops(arch, plan.tokens_generated, prompt, completion)
    vllm = backend != "transformers"
    sequences = sampling.batch_size * sampling.n
    plan.device_hours = generation_hours(arch, plan.tokens_generated, prompt, completion, sequences, assumptions, vllm)
    check_length(plan, arch, f"{kind}.sampling.max_new_tokens plus the prompt", prompt + sampling.max_new_tokens)
    kv = sequences * (prompt + sampling.max_new_tokens) * arch.kv_bytes_per_token / GIB
    plan.memory_gib = {"weights": 2 * arch.parameters / GIB, "kv cache": kv}
    plan.notes.append(
        f"{models} model(s) x {problems:,} problems x {sampling.n} samples, {sequences:,} sequences at once per GPU "
        f"({'vLLM' if vllm else 'transformers'})"
    )
    if vllm:  # vLLM holds at most its pool's worth at once and queues the rest: slower, not out of memory
        pool = 0.9 * DEVICES[assumptions.device].memory_gib - plan.memory_gib["weights"]
        if kv > pool:
            plan.notes.append(f"KV cache of a chunk {kv:.1f} GiB > vLLM's pool {pool:.1f} GiB: vLLM queues part of it")
        plan.memory_gib["kv cache"] = min(kv, pool)
    else:
        _fits(plan, usable, f"{sequences:,} sequences of up to {sampling.max_new_tokens:,} new tokens",
              f"lower {kind}.sampling.batch_size, or use vLLM ({kind}.backend)")  # fmt: skip
    return plan


def plan_rl_stage(name: str, key: str, rl, arch: Architecture, assumptions: Assumptions, usable: float) -> StagePlan:
    plan = StagePlan(f"rl:{name}", "rl")
    gpus = assumptions.gpus
    extra = rl.trl
    steps_per_generation = extra.get("steps_per_generation") or rl.gradient_accumulation_steps
    per_step = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * gpus  # completions
    if per_step % rl.num_generations:
        plan.fits = False
        plan.problems.append(
            f"{key}: {per_step} completions per step on {gpus} GPUs is not a multiple of num_generations "
            f"{rl.num_generations}"
        )
    iterations = extra.get("num_iterations", 1)
    prompt = assumptions.prompt_tokens
    completion = assumptions.completion_fill * rl.max_completion_length
    completions = rl.max_steps * per_step / iterations  # one rollout serves num_iterations optimizer steps
    plan.tokens_generated = completions * completion
    plan.tokens_trained = completions * (prompt + completion) * iterations
    plan.generation_flops = generation_flops(arch, plan.tokens_generated, prompt, completion)
    # The policy's forward pass for the old log-probabilities is skipped when every rollout is trained on once
    # in order (TRL recomputes them otherwise), and beta 0 needs no reference model.
    recompute = 1.0 if iterations > 1 or rl.gradient_accumulation_steps % steps_per_generation else 0.0
    plan.train_flops = training_flops(arch, plan.tokens_trained, prompt + completion) * (1 + recompute / 3)
    if rl.beta > 0:
        plan.train_flops += training_flops(arch, plan.tokens_trained, prompt + completion) / 3
    vllm = rl.use_vllm is not False  # None: on where vLLM and a GPU are, as on the node this plans for
    states = training_states_gib(arch, assumptions)
    micro = activations_gib(arch, rl.per_device_train_batch_size, prompt + rl.max_completion_length,
                            rl.gradient_checkpointing)  # fmt: skip
    rollout = rl.per_device_train_batch_size * steps_per_generation  # completions each GPU generates at once
    kv = rollout * (prompt + rl.max_completion_length) * arch.kv_bytes_per_token / GIB
    plan.notes.append(
        f"{rl.max_steps:,} steps x {per_step:,} completions ({per_step // rl.num_generations:,} prompts x "
        f"{rl.num_generations}); each GPU generates {rollout:,} at once"
    )
    decode_hours = generation_hours(arch, plan.tokens_generated, prompt, completion, rollout, assumptions, vllm)
    check_length(plan, arch, f"{key}.max_completion_length plus the prompt", prompt + rl.max_completion_length)
    plan.memory_gib = dict(states)
    if vllm:
        total = DEVICES[assumptions.device].memory_gib
        share = extra.get("vllm_gpu_memory_utilization", 0.3)
        sleeping = bool(extra.get("vllm_enable_sleep_mode", False))
        pool = share * total - 2 * arch.parameters / GIB - 1.0  # vLLM's own weights and working memory
        plan.memory_gib["vllm reservation"] = share * total
        if not sleeping:  # the pool stays allocated while training runs
            plan.memory_gib.update(micro)
        else:  # asleep while training: the peak is the larger of the two phases
            training = sum(states.values()) + sum(micro.values())
            if training > sum(plan.memory_gib.values()):
                plan.memory_gib = {**states, **micro}
            plan.notes.append(f"vLLM sleeps during training; training peak {training:.1f} GiB")
        if kv > pool:
            plan.fits = False
            waves = math.ceil(kv / max(pool, 1e-9))
            plan.problems.append(
                f"{key}: the rollout batch's KV cache, {rollout} x {prompt + rl.max_completion_length:,} tokens = "
                f"{kv:.1f} GiB, exceeds vLLM's pool of {max(pool, 0):.1f} GiB (vllm_gpu_memory_utilization {share}): "
                f"vLLM would run it in about {waves} waves; lower the rollout per GPU (trl.steps_per_generation, "
                f"per_device_train_batch_size), raise trl.vllm_gpu_memory_utilization with "
                f"trl.vllm_enable_sleep_mode: true, or shorten max_completion_length"
            )
    else:
        plan.memory_gib.update(micro)
        plan.memory_gib["kv cache"] = kv
    plan.device_hours = decode_hours + time_hours(plan.train_flops, assumptions, assumptions.train_mfu)
    fix = f"lower {key}.per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch)"
    if not vllm:
        fix += ", or generate with vLLM"
    _fits(plan, usable, f"{key}: training micro-batch and rollouts", fix)
    return plan
