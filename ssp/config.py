"""Recipes: YAML files mapped onto typed, nested dataclasses, with dotted `key=value` overrides.

This module is the schema: plain dataclasses and the loader, importing nothing of the runtime (no torch, TRL or
sandbox), so reading and checking a recipe is fast. Loading is strict. An unknown key, a value of the wrong type or
outside its range (the `metadata` of its field) or a missing local path raises `RecipeError` with a one-line message
naming the key, before any output folder exists or any model is loaded. The checks across keys are in
`ssp.recipe_checks`; the curriculum (`rl.stages`) is resolved and checked by the signal stage
(`ssp.signal.curriculum`), and `trl` keys against TRL's configs when a stage starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ssp import recipe_checks
from ssp.coerce import (
    AT_LEAST_1,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    RecipeError,
    apply_override,
    from_dict,
)

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
class TinyPretraining:
    """Pretraining of the embedded model on generic arithmetic text before the spectrum stage (ssp.pretrain), run
    once per machine and cached. 0 steps: the model starts from random weights."""

    steps: int = field(default=0, metadata=NON_NEGATIVE)
    learning_rate: float = field(default=3.0e-3, metadata=POSITIVE)
    batch_size: int = field(default=16, metadata=AT_LEAST_1)  # blocks per step
    length: int = field(default=128, metadata=AT_LEAST_1)  # tokens per block


@dataclass
class TinyModelSpec:
    """Shape of the embedded Llama-style model (about 1M parameters at the defaults; built by ssp.tiny_models)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    vocab_size: int = 128  # a target for BPE training; the real size is what the trainer ends up with
    pretrain: TinyPretraining = field(default_factory=TinyPretraining)


@dataclass
class LoraConfig:
    """LoRA adapters through peft instead of full fine-tuning (ssp.lora). Every saved model is the base with its
    adapters merged in, so probing, fusion, RL and serving see plain model folders."""

    enabled: bool = False
    r: int = field(default=16, metadata=AT_LEAST_1)  # adapter rank
    alpha: float = field(default=32.0, metadata=POSITIVE)  # scaling alpha / r
    dropout: float = field(default=0.05, metadata=FRACTION)
    target_modules: list[str] | str = "all-linear"  # peft's names: a list of module names, or all-linear


@dataclass
class ModelConfig:
    name_or_path: str = "tiny"  # a local folder, a hub id, or `tiny` to build the embedded model
    tiny: TinyModelSpec = field(default_factory=TinyModelSpec)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's own
    context: ContextConfig = field(default_factory=ContextConfig)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # other config fields, written like `context`
    lora: LoraConfig = field(default_factory=LoraConfig)  # off: full fine-tuning


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
    weights: dict[str, float] = field(default_factory=dict)  # subdomain -> weight; empty: see `merge`
    # uniform: 1/N each; score: each specialist weighted by its probing score; none: no merge, the spectrum model
    # is the best single checkpoint (the ablation's baseline)
    merge: Literal["uniform", "score", "none"] = "uniform"


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
    """GRPO with MGPO weighting on TRL's GRPOTrainer. A key named like a GRPOConfig field reaches TRL under that
    name (`ssp.signal.config`); keys not listed here go to TRL through `trl`.

    Every key but `stages` may be overridden per curriculum stage (`ssp.signal.curriculum`); a stage's `trl` keys
    are merged into `rl.trl`.
    """

    data: list[DataSource] = field(default_factory=lambda: [DataSource(split="train")])  # the RL prompts
    # reward name -> weight. Each data source's `reward` must be among them: it is the row's correctness reward,
    # whose group accuracy p drives the MGPO weight.
    rewards: dict[str, float] = field(default_factory=lambda: {"boxed_match": 1.0})
    mgpo_lambda: float = field(default=1.0, metadata=NON_NEGATIVE)  # 0: plain GRPO
    # before the stage trains, drop the prompts its initial model solves in all or none of num_generations samples
    difficulty_filter: bool = False
    # groups whose rewards have no variance are dropped and the batch refilled with new prompts (DAPO)
    dynamic_sampling: bool = False
    # generation rounds per batch with dynamic_sampling (the first included); then zero-variance groups fill it
    dynamic_sampling_max_rounds: int = field(default=8, metadata=AT_LEAST_1)
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
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.GRPOConfig field (none of the above)
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


# The data commands' and `ssp eval`'s schemas: their checks need the benchmark table and run when the command
# starts (`check_multipath_config`, `check_rl_set_config`, `check_config`, `run_eval`).

DEFAULT_N = 10  # words per n-gram of decontamination


@dataclass
class DecontaminateConfig:
    """The decontamination step of `ssp data multipath` and `ssp data rl`."""

    enabled: bool = True
    benchmarks: list[str] = field(default_factory=list)  # names or groups (all, math, code); empty: the data's kinds
    data_dir: str | None = None  # benchmark files in the layout of ../shared/data; null: load them from the hub
    n: int = DEFAULT_N


@dataclass
class MultipathConfig:
    """`ssp data multipath RECIPE` (docs/data.md)."""

    output: str = ""  # the JSONL written; the report goes next to it as <stem>.report.json
    overwrite: bool = False
    seed: int = 0
    sources: list[DataSource] = field(default_factory=list)  # problems, with candidates in `fields.solution`
    model: str | None = None  # also sample `sampling.n` candidates per problem with this model
    backend: Literal["auto", "transformers", "vllm"] = "auto"  # auto: vLLM when importable and a GPU is present
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    tensor_parallel_size: int = field(default=1, metadata=AT_LEAST_1)  # vLLM only
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prompt_template: str = "{problem}"
    system_prompt: str | None = None
    max_paths: int = field(default=4, metadata=AT_LEAST_1)  # P: paths kept per problem
    similarity_n: int = field(default=3, metadata=AT_LEAST_1)  # word n-grams compared between two paths of one problem
    duplicate_threshold: float = field(
        default=0.7, metadata=PROBABILITY
    )  # Jaccard similarity at or above which a path duplicates an earlier one
    max_tokens: int | None = field(
        default=None, metadata=AT_LEAST_1
    )  # longer candidates are rejected; counted with `tokenizer`
    tokenizer: str | None = None  # for max_tokens; default: `model`
    leetcode_prelude: bool = False  # code problems without their own prelude get ssp.rewards.code.LEETCODE_PRELUDE
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)


@dataclass
class RLSetConfig:
    """`ssp data rl RECIPE` (docs/data.md)."""

    output: str = ""  # the JSONL written; the report goes next to it as <stem>.report.json
    overwrite: bool = False
    sources: list[DataSource] = field(default_factory=list)  # problems with an answer (math) or tests (code)
    leetcode_prelude: bool = False  # code problems without their own prelude get ssp.rewards.code.LEETCODE_PRELUDE
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)


@dataclass
class EvalSettings:
    """`ssp eval`'s settings, from its command line (docs/evaluation.md)."""

    model: str
    benchmarks: list[str]
    out: str = "runs/eval"
    preset: str | None = None  # None: each benchmark's own preset (math or code, the report's protocol)
    overrides: dict = field(default_factory=dict)  # sampling fields replacing the preset's, e.g. {"n": 4}
    limit: int | None = None  # the first N problems of each benchmark
    data_dir: str | None = None  # read every benchmark from here (the layout of ../shared/data); None: the hub
    since: str | None = None  # release-date window of dated benchmarks (lcb)
    until: str | None = None
    backend: str = "auto"
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    seed: int = 0


@dataclass
class SweepVariant:
    """One variant of a sweep: a name and `key=value` overrides of the SFT and of the RL recipe."""

    name: str = ""  # letters, digits, ., -, _ and = (it names the variant in every table)
    sft: list[str] = field(default_factory=list)
    rl: list[str] = field(default_factory=list)


@dataclass
class SweepConfig:
    """`ssp sweep SWEEP.yaml` (docs/ablations.md): every (variant, seed) through both stages, with shared runs."""

    output_dir: str = ""
    sft: str = ""  # the base SFT recipe; empty: the demo's (recipes/demo/sft.yaml)
    rl: str = ""  # the base RL recipe; empty: the demo's (recipes/demo/rl.yaml)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    baseline: str = ""  # the variant every other is compared with; empty: the first
    common: SweepVariant = field(default_factory=SweepVariant)  # overrides every variant gets first (no name)
    variants: list[SweepVariant] = field(default_factory=list)
    # every combination of the values: {sft: {key: [values]}, rl: {key: [values]}}, a variant each
    grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)  # other sweep files (relative to this one) whose variants join
    resamples: int = field(default=2000, metadata=AT_LEAST_1)  # paired bootstrap resamples


# The schemas read from a YAML recipe, each with its checks across keys and on disk (ssp.recipe_checks).
CHECKS = {
    Recipe: recipe_checks.validate,
    MultipathConfig: recipe_checks.check_multipath,
    RLSetConfig: recipe_checks.check_rl_set,
    SweepConfig: recipe_checks.check_sweep,
}


def load_recipe(path: str | Path, overrides: list[str] = (), schema: type = Recipe, check_files: bool = True):
    """Read a YAML recipe of `schema` (a key of `CHECKS`), apply dotted `key=value` overrides and return it typed
    and checked. `check_files=False` skips the checks that data files, model folders and DeepSpeed configs exist
    (`ssp plan` reads recipes before their data is built)."""
    if schema not in CHECKS:
        raise TypeError(f"{schema.__name__} is not a recipe schema (known: {', '.join(s.__name__ for s in CHECKS)})")
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
    CHECKS[schema](recipe, check_files)
    return recipe


def dump_recipe(recipe) -> str:
    """The recipe as YAML, every key written out (what OUT/recipe.yaml holds); `load_recipe` reads it back."""
    return yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False)
