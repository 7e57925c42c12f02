"""`ssp plan RECIPE [key=value ...] [RECIPE [key=value ...]]`: what a run will cost and whether each stage fits on
the GPUs, before any expensive work. The formulas are in docs/plan.md; in short:

- FLOPs: 6N per trained token and 2N per generated token (N parameters, the numbers `cost.json` records), plus
  attention: 6 * layers * d_attn * L/2 per trained token of a length-L sequence, 4 * layers * d_attn * (context so
  far) per generated token.
- Time: FLOPs / (GPUs * peak * MFU), with a stated MFU for training and one for generation (decoding is bound by
  memory bandwidth, so its MFU is far lower; transformers' `generate` lower still than vLLM).
- Memory per GPU, in GiB: bf16 weights 2N, gradients 2N and Adam states 12N (fp32 master, momentum, variance),
  divided over the GPUs as the ZeRO stage says; activations of one micro-batch (with activation checkpointing:
  each layer's input plus one layer recomputed; without: every layer); TRL's chunked log-probabilities (it never
  materialises the full logits); and the KV cache of the sequences generated at once (28 KiB per token for
  Qwen2.5-1.5B), inside vLLM's fixed pool when vLLM generates.

Nothing is loaded or downloaded: the architecture comes from the model folder's config.json, the local hub cache or
`KNOWN_ARCHITECTURES`; data sizes from the recipe's local files when they exist, otherwise from stated assumptions.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ssp.config import RecipeError, load_recipe, resolve_stages
from ssp.data.benchmarks import BENCHMARK_PREFIX, BENCHMARKS
from ssp.evaluation.report import table_lines

GIB = 2**30
HEADROOM_GIB = 3.0  # CUDA context, NCCL buffers, allocator fragmentation
# Chunked log-probabilities (TRL's fused LM head): tiles of 4,096 tokens x 32,768 vocabulary entries in fp32, with
# the tile's gradient and the running statistics.
LOGPROB_TILE_GIB = 3 * 4096 * 32768 * 4 / GIB
CHARS_PER_TOKEN = 3.5  # English and LaTeX with a Qwen2-style BPE, for data sizes read from files


@dataclass(frozen=True)
class Device:
    memory_gib: float
    peak_tflops: float  # dense bf16
    bandwidth_tbps: float  # HBM, TB/s
    price_key: str  # the key of `cost.prices`


DEVICES = {
    "A100-80GB": Device(80.0, 312.0, 2.0, "A100"),
    "A100-40GB": Device(40.0, 312.0, 1.6, "A100"),
    "H100": Device(80.0, 989.0, 3.35, "H100"),
    "H800": Device(80.0, 989.0, 3.35, "H800"),
    "H200": Device(140.0, 989.0, 4.8, "H200"),
}


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    head_dim: int = 0  # 0: hidden_size / num_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def parameters(self) -> int:
        """Embedding, LM head (unless tied), and per layer: q/k/v with biases (Qwen2), o, the gated MLP, 2 norms."""
        q, kv = self.num_heads * self.head_size, self.num_kv_heads * self.head_size
        attention = self.hidden_size * (q + 2 * kv) + (q + 2 * kv) + q * self.hidden_size
        mlp = 3 * self.hidden_size * self.intermediate_size
        embedding = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embedding + self.num_layers * (attention + mlp + 2 * self.hidden_size) + self.hidden_size

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_size * 2  # keys and values, bf16

    def activation_bytes_per_token(self, checkpointing: bool) -> float:
        """bf16 tensors kept for the backward pass: per layer the norms' outputs, q, k, v, the attention output,
        and the MLP's gate, up, product and down input; with checkpointing only each layer's input is kept and one
        layer is recomputed at a time."""
        kv = self.num_kv_heads * self.head_size
        per_layer = 2 * (5 * self.hidden_size + 2 * kv + 4 * self.intermediate_size)
        if checkpointing:
            return self.num_layers * 2 * self.hidden_size + per_layer
        return self.num_layers * per_layer


KNOWN_ARCHITECTURES = {
    # config.json of the hub checkpoints, for planning without the hub.
    "Qwen/Qwen2.5-Math-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True, 4096),
    "Qwen/Qwen2.5-Math-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False, 4096),
    "Qwen/Qwen2.5-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True, 131072),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, False, 131072),
}


def architecture_from_config(config: dict) -> Architecture:
    return Architecture(
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings", 0),
        head_dim=config.get("head_dim") or 0,
    )


def find_architecture(name_or_path: str, planned_outputs: dict[str, Architecture]) -> Architecture | None:
    """A model folder's config, a run folder an earlier recipe of this plan writes, a spectrum run's base model,
    the local hub cache, or `KNOWN_ARCHITECTURES`; None if none of them knows the model."""
    path = Path(name_or_path).expanduser()
    resolved = str(path.resolve())
    if resolved in planned_outputs:
        return planned_outputs[resolved]
    for folder in (path, path / "spectrum", path / "base"):
        if (folder / "config.json").is_file():
            return architecture_from_config(json.loads((folder / "config.json").read_text()))
    if name_or_path in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[name_or_path]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid repo id, or no cache
        cached = None
    if isinstance(cached, str):
        return architecture_from_config(json.loads(Path(cached).read_text()))
    return None


@dataclass
class Assumptions:
    """What the plan cannot read from the recipe; every one is printed with the plan."""

    device: str = "A100-80GB"
    gpus: int = 8
    zero_stage: int = 2  # the DeepSpeed ZeRO stage of the launch (configs/accelerate/zero2.yaml)
    offload_optimizer: bool = False
    train_mfu: float = 0.35
    vllm_generation_mfu: float = 0.10
    transformers_generation_mfu: float = 0.02
    bandwidth_efficiency: float = 0.5  # share of HBM bandwidth decoding reaches (weights and KV cache reads)
    completion_fill: float = 0.5  # mean generated length as a fraction of the token budget
    prompt_tokens: int = 300  # mean prompt length when the data is not on disk
    sft_examples: int = 100_000  # SFT examples when the data is not on disk
    sft_fill: float = 0.5  # mean SFT example length as a fraction of sft.max_length, when the data is not on disk
    problems: int = 500  # problems of a probing or test source that is not on disk (MATH-500's size)


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

    @property
    def peak_gib(self) -> float:
        return sum(self.memory_gib.values())


# --------------------------------------------------------------------------------------------------------------
# Data sizes
# --------------------------------------------------------------------------------------------------------------


def _local_records(source) -> list[dict] | None:
    path = Path(source.path).expanduser()
    if source.path == "synthetic" or not path.is_file():
        return None
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return next(iter(data.values())) if isinstance(data, dict) and len(data) == 1 else data
    return None


def count_problems(sources, task, assumptions: Assumptions, notes: list[str]) -> int:
    total = 0
    for source in sources:
        records = _local_records(source)
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
    for source in recipe.data.train:
        records = _local_records(source)
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
# FLOPs and memory
# --------------------------------------------------------------------------------------------------------------


def training_flops(arch: Architecture, tokens: float, sequence: float) -> float:
    d_attn = arch.num_heads * arch.head_size
    return tokens * (6.0 * arch.parameters + 6.0 * arch.num_layers * d_attn * sequence / 2)


def generation_flops(arch: Architecture, tokens: float, prompt: float, completion: float) -> float:
    d_attn = arch.num_heads * arch.head_size
    return tokens * (2.0 * arch.parameters + 4.0 * arch.num_layers * d_attn * (prompt + completion / 2))


def training_states_gib(arch: Architecture, assumptions: Assumptions) -> dict[str, float]:
    """bf16 weights and gradients, fp32 Adam states (12 bytes a parameter), split over the GPUs by ZeRO stage."""
    n, g, stage = arch.parameters, assumptions.gpus, assumptions.zero_stage
    weights = 2 * n / (g if stage >= 3 else 1)
    gradients = 2 * n / (g if stage >= 2 else 1)
    optimizer = 0.0 if assumptions.offload_optimizer else 12 * n / (g if stage >= 1 else 1)
    return {"weights": weights / GIB, "gradients": gradients / GIB, "optimizer": optimizer / GIB}


def activations_gib(arch: Architecture, sequences: int, length: float, checkpointing: bool) -> dict[str, float]:
    per_token = arch.activation_bytes_per_token(checkpointing)
    return {"activations": sequences * length * per_token / GIB, "log-prob tiles": LOGPROB_TILE_GIB}


def time_hours(flops: float, assumptions: Assumptions, mfu: float) -> float:
    """Device-hours: FLOPs over every GPU's share of peak at the stated MFU, times the GPUs."""
    device = DEVICES[assumptions.device]
    seconds = flops / (assumptions.gpus * device.peak_tflops * 1e12 * mfu)
    return seconds / 3600 * assumptions.gpus


def generation_hours(
    arch: Architecture, tokens: float, prompt: float, completion: float, concurrent: int, assumptions, vllm: bool
) -> float:
    """Device-hours of decoding: the slower of compute (FLOPs at the generation MFU) and memory traffic (each step
    reads the weights once for all `concurrent` sequences and every sequence's KV cache so far)."""
    mfu = assumptions.vllm_generation_mfu if vllm else assumptions.transformers_generation_mfu
    compute = time_hours(generation_flops(arch, tokens, prompt, completion), assumptions, mfu)
    per_token = 2 * arch.parameters / max(concurrent, 1) + arch.kv_bytes_per_token * (prompt + completion / 2)
    device = DEVICES[assumptions.device]
    seconds = tokens * per_token / (assumptions.gpus * device.bandwidth_tbps * 1e12 * assumptions.bandwidth_efficiency)
    return max(compute, seconds / 3600 * assumptions.gpus)


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
    plan.steps = steps  # the probing plan counts checkpoints from it
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


# --------------------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------------------


def split_arguments(arguments: list[str]) -> list[tuple[str, list[str]]]:
    """`a.yaml k=v b.yaml k=v` -> [(a.yaml, [k=v]), (b.yaml, [k=v])]: overrides bind to the recipe before them."""
    groups: list[tuple[str, list[str]]] = []
    for argument in arguments:
        if "=" in argument and not argument.endswith((".yaml", ".yml")):
            if not groups:
                raise RecipeError(f"override {argument!r} comes before any recipe")
            groups[-1][1].append(argument)
        else:
            groups.append((argument, []))
    if not groups:
        raise RecipeError("ssp plan needs at least one recipe, e.g. ssp plan recipes/sft.yaml recipes/rl.yaml")
    return groups


def plan_recipes(arguments: list[str], assumptions: Assumptions, architecture: str | None = None) -> dict:
    """The plan of every recipe in `arguments`, in order; an RL recipe whose model is an earlier recipe's run
    folder is planned on that recipe's architecture."""
    if assumptions.device not in DEVICES:
        raise RecipeError(f"--device: unknown device {assumptions.device!r} (known: {', '.join(DEVICES)})")
    if assumptions.gpus < 1:
        raise RecipeError(f"--gpus: must be >= 1, got {assumptions.gpus}")
    device = DEVICES[assumptions.device]
    usable = device.memory_gib * 0.95 - HEADROOM_GIB
    outputs: dict[str, Architecture] = {}
    recipes = []
    for path, overrides in split_arguments(arguments):
        recipe = load_recipe(path, overrides, check_files=False)
        name = recipe.model.name_or_path
        arch = KNOWN_ARCHITECTURES.get(architecture) if architecture else find_architecture(name, outputs)
        if architecture and arch is None:
            arch = find_architecture(architecture, outputs)
        if arch is None:
            raise RecipeError(
                f"{path}: cannot tell the architecture of model.name_or_path {name!r} (not on disk, not in the hub "
                f"cache, not a known model; known: {', '.join(KNOWN_ARCHITECTURES)}); plan it together with the "
                f"recipe that writes it (ssp plan recipes/sft.yaml recipes/rl.yaml) or pass --architecture"
            )
        context = recipe.model.context.max_position_embeddings or arch.max_position_embeddings
        arch = dataclasses.replace(arch, max_position_embeddings=context)
        outputs[str(Path(recipe.output_dir).expanduser().resolve())] = arch
        price = recipe.cost.prices.get(device.price_key)
        if price is None:
            raise RecipeError(
                f"{path}: cost.prices has no price for {device.price_key} (--device {assumptions.device})"
            )
        stages = _plan_one(recipe, stage_of(path), arch, assumptions, usable)
        for stage in stages:
            stage.dollars = stage.device_hours * price
        recipes.append({"recipe": path, "overrides": overrides, "model": name, "parameters": arch.parameters,
                        "context": context, "price_per_device_hour": price, "stages": stages})  # fmt: skip
    hours = sum(stage.device_hours for entry in recipes for stage in entry["stages"])
    dollars = sum(stage.dollars for entry in recipes for stage in entry["stages"])
    return {
        "device": assumptions.device,
        "gpus": assumptions.gpus,
        "usable_gib_per_gpu": usable,
        "assumptions": dataclasses.asdict(assumptions),
        "recipes": recipes,
        "total": {
            "device_hours": hours,
            "dollars": dollars,
            "fits": all(stage.fits for entry in recipes for stage in entry["stages"]),
        },  # fmt: skip
        "report": {"device_hours": 3900, "device": "H800", "dollars": 7800},
    }


def stage_of(path: str) -> str:
    """`sft` or `rl`: the section the recipe file sets (a recipe is launched by one of `ssp sft` and `ssp rl`)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    sections = [name for name in ("sft", "rl") if name in raw]
    if len(sections) != 1:
        raise RecipeError(f"{path}: a recipe for ssp plan sets exactly one of the sections sft and rl")
    return sections[0]


def _plan_one(recipe, stage: str, arch: Architecture, assumptions: Assumptions, usable: float) -> list[StagePlan]:
    stages: list[StagePlan] = []
    task = recipe.task
    if stage == "sft":
        sft = plan_sft(recipe, arch, assumptions, usable)
        stages.append(sft)
        checkpoints = math.ceil(sft.steps / recipe.sft.save_every)
        probe_problems = count_problems(recipe.data.probe, task, assumptions, sft.notes)
        stages.append(plan_generation("probe", "probe", arch, assumptions, usable, probe_problems,
                                      recipe.probe.sampling, checkpoints, recipe.probe.backend))  # fmt: skip
        models = 3 if recipe.eval.base else 2
    else:
        for index, (name, rl) in enumerate(resolve_stages(recipe.rl, check_files=False)):
            key = f"rl.stages.{index}" if recipe.rl.stages else "rl"
            stages.append(plan_rl_stage(name, key, rl, arch, assumptions, usable))
        models = len(stages) + (1 if recipe.eval.base else 0)
    test_problems = count_problems(recipe.data.test, task, assumptions, [])
    evaluation = plan_generation("eval", "eval", arch, assumptions, usable, test_problems, recipe.eval.sampling,
                                 models, recipe.eval.backend)  # fmt: skip
    stages.append(evaluation)
    return stages


def plan_table(plan: dict) -> list[str]:
    rows = []
    for entry in plan["recipes"]:
        for stage in entry["stages"]:
            rows.append(
                [
                    Path(entry["recipe"]).name,
                    stage.name,
                    f"{stage.tokens_trained / 1e9:.2f}B",
                    f"{stage.tokens_generated / 1e9:.2f}B",
                    f"{(stage.train_flops + stage.generation_flops) / 1e18:.1f}",
                    f"{stage.peak_gib:.1f}",
                    "yes" if stage.fits else "NO",
                    f"{stage.device_hours:,.0f}",
                    f"{stage.dollars:,.0f}",
                ]
            )
    total = plan["total"]
    rows.append(["total", "", "", "", "", "", "yes" if total["fits"] else "NO", f"{total['device_hours']:,.0f}",
                 f"{total['dollars']:,.0f}"])  # fmt: skip
    report = plan["report"]
    rows.append(["VibeThinker report", "SFT + RL", "", "", "", "", "", f"{report['device_hours']:,} (H800)",
                 f"{report['dollars']:,}"])  # fmt: skip
    header = ["recipe", "stage", "tokens trained", "tokens generated", "EFLOPs", "peak GiB/GPU", "fits",
              "device-hours", "$"]  # fmt: skip
    return table_lines(header, rows)


def print_plan(plan: dict) -> None:
    a = plan["assumptions"]
    print(
        f"Plan on {plan['gpus']} x {plan['device']} ({plan['usable_gib_per_gpu']:.1f} GiB usable per GPU), ZeRO-"
        f"{a['zero_stage']}{' with optimizer offload' if a['offload_optimizer'] else ''}; MFU assumed: training "
        f"{a['train_mfu']}, generation {a['vllm_generation_mfu']} (vLLM) / {a['transformers_generation_mfu']} "
        f"(transformers); generated lengths {a['completion_fill']:.0%} of their budgets.\n"
    )
    print("\n".join(plan_table(plan)))
    for entry in plan["recipes"]:
        print(f"\n{entry['recipe']}: {entry['model']}, {entry['parameters'] / 1e9:.2f}B parameters, "
              f"context {entry['context']:,}")  # fmt: skip
        for stage in entry["stages"]:
            memory = ", ".join(f"{name} {gib:.1f}" for name, gib in stage.memory_gib.items())
            print(f"  {stage.name}: {memory} GiB per GPU")
            for note in stage.notes:
                print(f"    {note}")
            for problem in stage.problems:
                print(f"    DOES NOT FIT: {problem}")


def plan_json(plan: dict) -> dict:
    """The plan with its stages as plain dicts (for --json)."""
    out = dict(plan)
    out["recipes"] = [
        {**entry, "stages": [{**dataclasses.asdict(s), "peak_gib": s.peak_gib} for s in entry["stages"]]}
        for entry in plan["recipes"]
    ]
    return out
