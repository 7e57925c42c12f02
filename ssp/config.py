"""Recipes: YAML files mapped onto typed, nested dataclasses, with dotted `key=value` overrides.

Loading is strict. An unknown key, a value of the wrong type or outside its range (the `metadata` of its field)
or a missing local path raises `RecipeError` with a one-line message naming the key, before any output folder
exists or any model is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import trl
import yaml

from ssp.coerce import (
    AT_LEAST_1,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    RecipeError,
    apply_override,
    check_ranges,
    describe,
    from_dict,
)
from ssp.files import write_text
from ssp.models import looks_like_local_path
from ssp.rewards import REWARDS
from ssp.tiny_models import TinyModelSpec

# Field ranges (ssp.coerce) beyond the shared ones.
STEPS_OR_EPOCHS = {"range": (lambda value: value > 0 or value == -1, "positive, or -1 to use num_train_epochs")}
TOP_K = {"range": (lambda value: value >= 0, ">= 0 (0: off)")}
REPETITION_PENALTY = {"range": (lambda value: value > 0, "> 0 (1.0: off)")}
DIFFICULTY = {"range": (lambda value: value in (1, 2, 3), "1, 2 or 3")}
GROUP_SIZE = {"range": (lambda value: value >= 2, ">= 2 (GRPO compares the completions of a prompt)")}


@dataclass
class FieldMap:
    """Column names of a dataset, mapped onto the fields ssp uses. An empty name means the column is absent."""

    problem: str = "problem"
    solution: str = "solution"  # a string (one path per row) or a list of strings (several paths)
    answer: str = "answer"  # rows without it take the last \boxed{} of their first solution
    domain: str = "domain"  # empty: every row gets `DataSource.domain`
    tests: str = ""  # code problems: the tests the code reward runs
    prelude: str = ""  # code problems: code run before the program (e.g. LeetCode's imports and ListNode)


@dataclass
class DataSource:
    """One dataset: the embedded synthetic task, a local JSONL/JSON/Parquet file, or a hub dataset id."""

    path: str = "synthetic"
    split: str = "train"  # synthetic: train / probe / test; hub: the split name; ignored for local files
    name: str | None = None  # hub dataset configuration name
    fields: FieldMap = field(default_factory=FieldMap)
    domain: str = ""  # domain of every row when the data has no domain column
    domain_map: dict[str, str] = field(default_factory=dict)  # raw label -> subdomain; unmapped labels are dropped
    domains: list[str] = field(default_factory=list)  # keep only these subdomains (empty: all)
    reward: str = "boxed_match"  # the correctness reward (a name in ssp.rewards.REWARDS) that scores these rows
    limit: int | None = field(default=None, metadata=AT_LEAST_1)  # at most this many problems per subdomain
    prompt_template: str | None = None  # these rows' user turn ({problem} replaced); None: data.prompt_template
    data_dir: str | None = None  # `path: benchmark:<name>` sources: files laid out like ../shared/data; None: hub


@dataclass
class TaskConfig:
    """The embedded synthetic reasoning task (ssp.data.synthetic), generated deterministically from `seed`."""

    seed: int = 0
    difficulty: int = field(default=1, metadata=DIFFICULTY)  # 1: single-digit operands; 2 and 3 widen the ranges
    domains: list[str] = field(default_factory=lambda: ["arithmetic", "linear", "modular", "sequence"])
    train_size: int = field(default=2000, metadata=AT_LEAST_1)  # problems, split evenly over the domains
    probe_size: int = field(default=32, metadata=AT_LEAST_1)  # problems per domain
    test_size: int = field(default=50, metadata=AT_LEAST_1)  # problems per domain


@dataclass
class DataConfig:
    train: list[DataSource] = field(default_factory=lambda: [DataSource(split="train")])
    probe: list[DataSource] = field(default_factory=lambda: [DataSource(split="probe")])
    test: list[DataSource] = field(default_factory=lambda: [DataSource(split="test")])
    # solution paths per problem used for SFT; 1 is the single-path ablation
    paths_per_problem: int = field(default=2, metadata=AT_LEAST_1)
    prompt_template: str = "{problem}"  # the user turn; `{problem}` is replaced by the problem text
    system_prompt: str | None = None


@dataclass
class ContextConfig:
    """The model's context, set once: written into the initial model's config (OUT/base), so every checkpoint, the
    merged model, TRL's vLLM engine, RL and evaluation see the same positions and RoPE. None keeps the model's."""

    max_position_embeddings: int | None = field(default=None, metadata=AT_LEAST_1)
    rope_theta: float | None = field(default=None, metadata=POSITIVE)
    # e.g. {rope_type: yarn, factor: 4.0, original_max_position_embeddings: 4096}
    rope_scaling: dict[str, Any] | None = None


@dataclass
class ModelConfig:
    name_or_path: str = "tiny"  # a local folder, a hub id, or `tiny` to build the embedded model
    tiny: TinyModelSpec = field(default_factory=TinyModelSpec)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's own
    context: ContextConfig = field(default_factory=ContextConfig)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # other config fields, written like `context`


@dataclass
class SFTSection:
    """Multi-path SFT on TRL's SFTTrainer. Keys not listed here go to TRL through `trl`."""

    max_steps: int = field(default=500, metadata=STEPS_OR_EPOCHS)  # -1: train for `num_train_epochs`
    num_train_epochs: float = field(default=1.0, metadata=POSITIVE)
    learning_rate: float = field(default=3e-3, metadata=NON_NEGATIVE)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = field(default=0.05, metadata=FRACTION)
    weight_decay: float = field(default=0.0, metadata=NON_NEGATIVE)
    per_device_train_batch_size: int = field(default=64, metadata=AT_LEAST_1)
    gradient_accumulation_steps: int = field(default=1, metadata=AT_LEAST_1)
    max_length: int = field(default=256, metadata=AT_LEAST_1)
    # a checkpoint every this many optimizer steps (and at the end) into checkpoints/step-N
    save_every: int = field(default=100, metadata=AT_LEAST_1)
    logging_steps: int = field(default=10, metadata=AT_LEAST_1)
    bf16: bool | None = None  # None: on when the device supports it
    gradient_checkpointing: bool = False
    report_to: list[str] = field(default_factory=list)  # e.g. [wandb]
    deepspeed: str | None = None  # a DeepSpeed JSON config; usually set by the accelerate config instead
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.SFTConfig field, passed through


@dataclass
class SamplingConfig:
    n: int = field(default=8, metadata=AT_LEAST_1)  # samples per problem
    temperature: float = field(default=1.0, metadata=NON_NEGATIVE)  # 0: greedy
    top_p: float = field(default=1.0, metadata=PROBABILITY)
    top_k: int = field(default=0, metadata=TOP_K)
    max_new_tokens: int = field(default=64, metadata=AT_LEAST_1)
    batch_size: int = field(default=64, metadata=AT_LEAST_1)  # prompts per generate call, n sequences each
    repetition_penalty: float = field(default=1.0, metadata=REPETITION_PENALTY)


Backend = Literal["auto", "transformers", "vllm"]  # auto: vLLM when it is importable and a GPU is present


@dataclass
class ProbeConfig:
    """Domain-aware diversity probing of every saved checkpoint, spread over the launch's processes."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    ks: list[int] = field(default_factory=lambda: [1, 4, 8])
    backend: Backend = "auto"


@dataclass
class FusionConfig:
    """Per-subdomain checkpoint selection and their merge into one spectrum model."""

    metric: Literal["pass@k", "pass@1"] = "pass@k"
    k: int = 8  # the K of pass@K when metric is pass@k
    weights: dict[str, float] = field(default_factory=dict)  # subdomain -> weight; empty: uniform 1/N


@dataclass
class EvalConfig:
    """Held-out evaluation on the test split (the same code as probing)."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    ks: list[int] = field(default_factory=lambda: [1, 4, 8])
    base: bool = True  # also evaluate the initial model
    greedy: bool = True  # also report greedy (temperature 0) accuracy
    backend: Backend = "auto"


@dataclass
class CostConfig:
    device_type: str = "auto"  # auto: detected (A100, H100, H800, H200, cpu, ...)
    # USD per device-hour. H800 is the report's $2; A100 matches its DeepScaleR row (3.8K hours, $4.5K);
    # cpu is one whole machine (a small cloud VM), not a core.
    prices: dict[str, float] = field(
        default_factory=lambda: {"A100": 1.2, "H100": 2.5, "H800": 2.0, "H200": 3.0, "cpu": 0.1}
    )


@dataclass
class RLSection:
    """GRPO with MGPO weighting on TRL's GRPOTrainer. Keys not listed here go to TRL through `trl`.

    Every key but `stages` may be overridden per curriculum stage; a stage's `trl` keys are merged into `rl.trl`.
    """

    data: list[DataSource] = field(default_factory=lambda: [DataSource(split="train")])  # the RL prompts
    # reward name -> weight. Each data source's `reward` must be among them: it is the row's correctness reward,
    # whose group accuracy p drives the MGPO weight.
    rewards: dict[str, float] = field(default_factory=lambda: {"boxed_match": 1.0})
    mgpo_lambda: float = field(default=1.0, metadata=NON_NEGATIVE)  # 0: plain GRPO
    max_steps: int = field(default=100, metadata=AT_LEAST_1)
    learning_rate: float = field(default=5e-5, metadata=NON_NEGATIVE)
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = field(default=0.0, metadata=FRACTION)
    weight_decay: float = field(default=0.0, metadata=NON_NEGATIVE)
    # completions (prompts x num_generations) per device and step
    per_device_train_batch_size: int = field(default=64, metadata=AT_LEAST_1)
    gradient_accumulation_steps: int = field(default=1, metadata=AT_LEAST_1)
    num_generations: int = field(default=8, metadata=GROUP_SIZE)  # G, completions per prompt
    max_completion_length: int = field(default=64, metadata=AT_LEAST_1)
    temperature: float = field(default=1.0, metadata=POSITIVE)  # GRPO samples: no greedy decoding
    top_p: float = field(default=1.0, metadata=PROBABILITY)
    top_k: int = field(default=0, metadata=TOP_K)
    beta: float = field(default=0.0, metadata=NON_NEGATIVE)  # KL coefficient; the report's objective has no KL term
    epsilon: float = field(default=0.2, metadata=POSITIVE)  # clip range
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = "grpo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = False
    use_vllm: bool | None = None  # None: on when vLLM is importable and a GPU is present
    vllm_mode: Literal["colocate", "server"] = "colocate"
    bf16: bool | None = None  # None: on when the device supports it
    gradient_checkpointing: bool = False
    logging_steps: int = field(default=10, metadata=AT_LEAST_1)
    # intermediate checkpoints within a stage; the final model is always saved
    save_every: int | None = field(default=None, metadata=AT_LEAST_1)  # a resumable state every N steps (ssp.resume)
    report_to: list[str] = field(default_factory=list)
    deepspeed: str | None = None
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.GRPOConfig field, passed through
    stages: list[dict[str, Any]] = field(default_factory=list)  # curriculum: [{name: ..., <any key above>}, ...]


@dataclass
class Recipe:
    output_dir: str = ""
    seed: int = 0
    overwrite: bool = False  # allow writing into an output_dir that already holds files
    # How long a process waits at a collective (a barrier, a gather) before the launch fails. Probing and evaluation
    # are spread over every process, so waits are short; the margin covers the main process's saving and merging.
    distributed_timeout_minutes: float = field(default=120.0, metadata=POSITIVE)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    rl: RLSection = field(default_factory=RLSection)


def load_recipe(path: str | Path, overrides: list[str] = (), schema: type = Recipe, check_files: bool = True):
    """Read a YAML recipe, apply dotted `key=value` overrides and return the typed, validated recipe.
    `check_files=False` skips the checks that data files, model folders and DeepSpeed configs exist (`ssp plan`
    reads recipes before their data is built)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    recipe = from_dict(schema, raw)
    if schema is Recipe:  # other schemas (the `ssp data` commands) are checked by the command that reads them
        validate(recipe, check_files)
    return recipe


def validate(recipe, check_files: bool = True) -> None:
    """Checks across keys and on the filesystem; every message names the key at fault."""
    if not recipe.output_dir:
        raise RecipeError("output_dir: required (the run folder), e.g. output_dir=runs/my-run")
    if check_files:
        check_model_path(recipe.model.name_or_path, "model.name_or_path", allow_tiny=True, require_config=True)
    data = recipe.data
    if "{problem}" not in data.prompt_template:
        raise RecipeError("data.prompt_template: must contain {problem}")
    for split in ("train", "probe", "test"):
        sources = getattr(data, split)
        if not sources:
            raise RecipeError(f"data.{split}: at least one source is required")
        for i, source in enumerate(sources):
            check_source(source, f"data.{split}.{i}", check_files)
    _check_ks(recipe.probe.sampling, recipe.probe.ks, "probe")
    _check_ks(recipe.eval.sampling, recipe.eval.ks, "eval")
    if recipe.fusion.metric == "pass@k" and recipe.fusion.k not in recipe.probe.ks:
        raise RecipeError(f"fusion.k: {recipe.fusion.k} is not among probe.ks {recipe.probe.ks}")
    if recipe.fusion.metric == "pass@1" and 1 not in recipe.probe.ks:
        raise RecipeError(f"fusion.metric: pass@1 is probed only when probe.ks holds 1, got {recipe.probe.ks}")
    for domain, weight in recipe.fusion.weights.items():
        if weight < 0:
            raise RecipeError(f"fusion.weights.{domain}: must be >= 0, got {weight}")
    if recipe.fusion.weights and sum(recipe.fusion.weights.values()) <= 0:
        raise RecipeError("fusion.weights: at least one weight must be positive")
    sft = recipe.sft
    if check_files and sft.deepspeed and not Path(sft.deepspeed).is_file():
        raise RecipeError(f"sft.deepspeed: file not found: {sft.deepspeed}")
    _check_trl_keys(sft.trl, "sft.trl", "SFTConfig")
    resolve_stages(recipe.rl, check_files)
    _check_context(recipe.model.context)
    for device, price in recipe.cost.prices.items():
        if price < 0:
            raise RecipeError(f"cost.prices.{device}: must be >= 0, got {price}")
    if recipe.cost.device_type != "auto" and recipe.cost.device_type not in recipe.cost.prices:
        raise RecipeError(f"cost.device_type: no price for {recipe.cost.device_type!r} in cost.prices")


def check_source(source: DataSource, key: str, check_files: bool = True) -> None:
    if source.reward not in REWARDS:
        raise RecipeError(f"{key}.reward: unknown reward {source.reward!r} (known: {', '.join(REWARDS)})")
    if source.path == "synthetic":
        if source.split not in ("train", "probe", "test"):
            raise RecipeError(f"{key}.split: the synthetic task has train, probe and test, not {source.split!r}")
    elif source.path.startswith("benchmark:"):  # the benchmark's name and files are checked when it loads
        if check_files and source.data_dir is not None and not Path(source.data_dir).expanduser().is_dir():
            raise RecipeError(f"{key}.data_dir: folder not found: {source.data_dir}")
    elif check_files and looks_like_local_path(source.path) and not Path(source.path).expanduser().exists():
        raise RecipeError(f"{key}.path: file not found: {source.path}")
    if source.prompt_template is not None and "{problem}" not in source.prompt_template:
        raise RecipeError(f"{key}.prompt_template: must contain {{problem}}")


def resolve_stages(rl: RLSection, check_files: bool = True) -> list[tuple[str, RLSection]]:
    """The curriculum as (name, settings) pairs: each stage is the `rl` section with the stage's keys replaced.

    Without `rl.stages` there is one stage named `main`. Every stage is type-checked and validated here.
    """
    if not rl.stages:
        _check_rl(rl, "rl", check_files)
        return [("main", rl)]
    base = {f.name: getattr(rl, f.name) for f in dataclasses.fields(RLSection) if f.name != "stages"}
    base["data"] = [dataclasses.asdict(source) for source in rl.data]
    stages, names = [], set()
    for i, entry in enumerate(rl.stages):
        key = f"rl.stages.{i}"
        if not isinstance(entry, dict):
            raise RecipeError(
                f"{key}: a stage is a mapping of a name and the keys it overrides, got {describe(entry)}"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise RecipeError(f"{key}.name: required; letters, digits, - and _ only (it names stages/<name>/)")
        if name in names:
            raise RecipeError(f"{key}.name: {name!r} is used by an earlier stage")
        names.add(name)
        overrides = {k: v for k, v in entry.items() if k != "name"}
        for k in overrides:
            if k not in base:
                raise RecipeError(f"unknown key {key}.{k} (a stage overrides keys of rl: {', '.join(sorted(base))})")
        if isinstance(overrides.get("trl"), dict):  # TRL's fields merge: a stage sets only the ones it changes
            overrides["trl"] = {**base["trl"], **overrides["trl"]}
        merged = from_dict(RLSection, {**base, **overrides}, f"{key}.")
        _check_rl(merged, key, check_files)
        stages.append((name, merged))
    return stages


def _check_rl(rl: RLSection, key: str, check_files: bool = True) -> None:
    for name, weight in rl.rewards.items():
        if name not in REWARDS:
            raise RecipeError(f"{key}.rewards: unknown reward {name!r} (known: {', '.join(REWARDS)})")
        if weight < 0:
            raise RecipeError(f"{key}.rewards.{name}: weight must be >= 0, got {weight}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * world
    if completions % rl.num_generations:
        raise RecipeError(
            f"{key}.per_device_train_batch_size: {completions} completions per step ({world} processes) is not a "
            f"multiple of num_generations {rl.num_generations}"
        )
    for i, source in enumerate(rl.data):
        check_source(source, f"{key}.data.{i}", check_files)
        if source.reward not in rl.rewards:
            raise RecipeError(
                f"{key}.data.{i}.reward: {source.reward!r} scores these rows' correctness (MGPO's p), so it must be "
                f"one of {key}.rewards ({', '.join(rl.rewards)})"
            )
    if check_files and rl.deepspeed and not Path(rl.deepspeed).is_file():
        raise RecipeError(f"{key}.deepspeed: file not found: {rl.deepspeed}")
    _check_trl_keys(rl.trl, f"{key}.trl", "GRPOConfig")


def _check_context(context: ContextConfig) -> None:
    if context.rope_scaling is not None and "rope_type" not in context.rope_scaling:
        raise RecipeError("model.context.rope_scaling: needs a rope_type (e.g. yarn, linear, dynamic)")


def check_model_path(name_or_path: str, key: str, allow_tiny: bool = False, require_config: bool = False) -> None:
    """A hub id passes (it is checked when it loads); a local path must exist and, with `require_config`, be a
    model folder. `require_config=False` also accepts a folder holding only a tokenizer."""
    if (allow_tiny and name_or_path == "tiny") or not looks_like_local_path(name_or_path):
        return
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise RecipeError(f"{key}: model folder not found: {name_or_path}")
    # A spectrum run folder stands for its merged model (`ssp rl` starts from it).
    if require_config and not (path / "config.json").is_file() and not (path / "spectrum" / "config.json").is_file():
        raise RecipeError(f"{key}: {name_or_path} is not a model folder (no config.json)")


def check_sampling(sampling: SamplingConfig, where: str = "sampling") -> None:
    """Sampling values in their ranges, for settings not loaded from a recipe (presets with CLI overrides); `where`
    names the section in the error."""
    check_ranges(sampling, where)


def _check_ks(sampling: SamplingConfig, ks: list[int], section: str) -> None:
    if not ks:
        raise RecipeError(f"{section}.ks: at least one k is required")
    for k in ks:
        if not 1 <= k <= sampling.n:
            raise RecipeError(f"{section}.ks: k={k} needs 1 <= k <= {section}.sampling.n ({sampling.n})")


def _check_trl_keys(extra: dict, key: str, trl_class: str) -> None:
    known = {f.name for f in dataclasses.fields(getattr(trl, trl_class))}
    for name in extra:
        if name not in known:
            raise RecipeError(f"unknown key {key}.{name}: not a field of trl.{trl_class}")


def dump_recipe(recipe, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
