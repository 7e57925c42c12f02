"""The `ssp` command (also `python -m ssp` and `accelerate launch -m ssp`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import datasets
import transformers

from ssp.config import RecipeError, load_recipe
from ssp.data.benchmarks import BENCHMARKS
from ssp.data.decontaminate import DEFAULT_N, run_decontaminate
from ssp.data.multipath import MultipathConfig, run_multipath
from ssp.data.rl_sets import RLSetConfig, run_rl_set
from ssp.demo import run_demo
from ssp.evaluation.run import EvalSettings, run_eval
from ssp.generation.backends import BACKENDS
from ssp.generation.presets import PRESETS
from ssp.inference import REASONING_INSTRUCTIONS, InferenceEngine
from ssp.plan import DEVICES, KNOWN_ARCHITECTURES, Assumptions, plan_json, plan_recipes, print_plan
from ssp.runs import release_distributed
from ssp.signal.run import run_signal
from ssp.spectrum.fusion import MergeError, merge_models
from ssp.spectrum.run import run_spectrum


def _stage_parser(sub, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("recipe", help="a recipe YAML file, e.g. recipes/demo/sft.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output_dir=runs/x sft.max_steps=50"
    )


def _data_parser(sub) -> None:
    data = sub.add_parser("data", help="build SFT and RL data: multipath, decontaminate, rl (docs/data.md)")
    commands = data.add_subparsers(dest="data_command", required=True)
    for name, help_text, example in (
        ("multipath", "verified, diverse solution paths per problem (an SFT set)", "recipes/data/sft_math.yaml"),
        ("rl", "prompt/answer (math) or prompt/tests (code) sets for ssp rl", "recipes/data/rl_math.yaml"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("recipe", help=f"a data recipe YAML file, e.g. {example}")
        command.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output=x.jsonl")
    clean = commands.add_parser(
        "decontaminate",
        help="drop rows sharing a normalised word n-gram with a benchmark",
        description="Drop every input row whose text shares a normalised word n-gram with a benchmark problem.",
    )
    clean.add_argument("inputs", nargs="+", help="local .jsonl/.json/.parquet files or hub dataset ids")
    clean.add_argument("--out", required=True, help="the kept rows (JSONL); the report goes to <stem>.report.json")
    clean.add_argument("--field", default="problem", help="the column holding the text to compare (default: problem)")
    clean.add_argument(
        "--benchmarks", default="all", help="comma-separated benchmark names, or all / math / code (default: all)"
    )
    clean.add_argument(
        "--data-dir",
        help="benchmark files laid out like ../shared/data (default: the hub; leetcode and lcb have no hub copy)",
    )
    clean.add_argument("--n", type=int, default=DEFAULT_N, help=f"words per n-gram (default: {DEFAULT_N})")
    clean.add_argument("--split", default="train", help="split of hub dataset inputs (default: train)")
    clean.add_argument("--name", help="configuration of hub dataset inputs")
    clean.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run_data(args) -> None:
    if args.data_command == "multipath":
        run_multipath(load_recipe(args.recipe, args.overrides, schema=MultipathConfig))
    elif args.data_command == "rl":
        run_rl_set(load_recipe(args.recipe, args.overrides, schema=RLSetConfig))
    else:
        run_decontaminate(
            args.inputs,
            args.out,
            problem_field=args.field,
            benchmarks=[name.strip() for name in args.benchmarks.split(",")],
            data_dir=args.data_dir,
            n=args.n,
            split=args.split,
            name=args.name,
            overwrite=args.overwrite,
        )


def _sampling_arguments(parser, default_preset: str | None) -> None:
    default = "each benchmark's: math or code" if default_preset is None else default_preset
    parser.add_argument("--preset", choices=list(PRESETS), default=default_preset, help=f"(default: {default})")
    parser.add_argument("--n", type=int, help="samples per prompt (overrides the preset)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int, help="0: off")
    parser.add_argument("--max-new-tokens", type=int, help="never beyond the model's context")
    parser.add_argument("--repetition-penalty", type=float, help="1.0: off")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: vLLM when importable with a GPU")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model (vLLM)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0)


def _sampling_overrides(args) -> dict:
    names = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "batch_size")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _eval_parser(sub) -> None:
    help_text = "benchmark evaluation: pass@1 with standard error, pass@k, maj@n, report (docs/evaluation.md)"
    parser = sub.add_parser("eval", help=help_text, description=help_text)
    parser.add_argument("--model", required=True, help="a local model folder or a hub id")
    parser.add_argument("--benchmarks", required=True, help=f"comma-separated, from: {','.join(BENCHMARKS)}")
    parser.add_argument("--limit", type=int, help="the first N problems of each benchmark")
    parser.add_argument(
        "--data-dir",
        help="benchmark files laid out like ../shared/data (default: the hub; leetcode and lcb have no hub copy)",
    )
    parser.add_argument("--out", default="runs/eval", help="report folder; rerun with the same one to resume")
    parser.add_argument("--since", help="lcb: keep problems released on or after this date (YYYY-MM-DD)")
    parser.add_argument("--until", help="lcb: keep problems released on or before this date (YYYY-MM-DD)")
    _sampling_arguments(parser, None)


def _generate_parser(sub) -> None:
    help_text = "answer one problem with a model and print the reasoning and the final answer"
    parser = sub.add_parser("generate", help=help_text, description=help_text)
    parser.add_argument("problem", help="the problem (the user message)")
    parser.add_argument("--model", required=True, help="a local model folder or a hub id")
    parser.add_argument(
        "--language", choices=[*REASONING_INSTRUCTIONS, "none"], default="en",
        help="wrap the problem with the step-by-step / \\boxed{} instruction in this language (none: send as is)",
    )  # fmt: skip
    _sampling_arguments(parser, "recommended")


def run_eval_command(args) -> None:
    settings = EvalSettings(
        model=args.model,
        benchmarks=[name.strip() for name in args.benchmarks.split(",") if name.strip()],
        out=args.out,
        preset=args.preset,
        overrides=_sampling_overrides(args),
        limit=args.limit,
        data_dir=args.data_dir,
        since=args.since,
        until=args.until,
        backend=args.backend,
        tensor_parallel_size=args.tensor_parallel_size,
        dtype=args.dtype,
        seed=args.seed,
    )
    run_eval(settings)
    print((Path(args.out) / "results.md").read_text(), end="")
    print(f"report: {args.out}/results.json, results.md, pass_at_k.png; samples: {args.out}/samples/")


def run_generate_command(args) -> None:
    engine = InferenceEngine(
        args.model, backend=args.backend, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size
    )
    language = None if args.language == "none" else args.language
    overrides = _sampling_overrides(args)
    completions = engine.generate(args.problem, args.preset, reasoning_language=language, seed=args.seed, **overrides)
    for i, completion in enumerate(completions):
        if len(completions) > 1:
            print(f"=== sample {i + 1} of {len(completions)}")
        print(completion.text)
        cut = " (truncated)" if completion.truncated else ""
        print(f"--- {completion.length} tokens{cut}")
        print("final answer:", completion.answer if completion.answer is not None else "(no \\boxed{} answer)")


def _plan_parser(sub) -> None:
    help_text = (
        "before a run: tokens, FLOPs, memory per GPU, fit, device-hours and dollars of each stage (docs/plan.md)"
    )
    parser = sub.add_parser("plan", help=help_text, description=help_text)
    parser.add_argument(
        "arguments", nargs="+", metavar="RECIPE [key=value ...]",
        help="recipes, each followed by its overrides: recipes/sft.yaml sft.max_steps=100 recipes/rl.yaml",
    )  # fmt: skip
    defaults = Assumptions()
    parser.add_argument("--device", default=defaults.device, choices=list(DEVICES))
    parser.add_argument("--gpus", type=int, default=defaults.gpus, help="GPUs of the launch (default: one node)")
    parser.add_argument(
        "--zero", type=int, default=defaults.zero_stage, choices=[0, 1, 2, 3], help="DeepSpeed ZeRO stage"
    )
    parser.add_argument("--offload-optimizer", action="store_true", help="Adam states in CPU memory")
    parser.add_argument("--train-mfu", type=float, default=defaults.train_mfu)
    parser.add_argument("--vllm-mfu", type=float, default=defaults.vllm_generation_mfu, help="generation with vLLM")
    parser.add_argument("--transformers-mfu", type=float, default=defaults.transformers_generation_mfu)
    parser.add_argument("--completion-fill", type=float, default=defaults.completion_fill,
                        help="mean generated length as a fraction of the token budget")  # fmt: skip
    parser.add_argument("--prompt-tokens", type=int, default=defaults.prompt_tokens)
    parser.add_argument("--sft-examples", type=int, default=defaults.sft_examples, help="when the data is not on disk")
    parser.add_argument("--sft-fill", type=float, default=defaults.sft_fill, help="when the data is not on disk")
    parser.add_argument("--problems", type=int, default=defaults.problems, help="per probe/test source not on disk")
    parser.add_argument("--architecture", help=f"plan for this model's shape (e.g. {next(iter(KNOWN_ARCHITECTURES))})")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run_plan_command(args) -> bool:
    """Print the plan; False when a stage does not fit (the command then exits with status 1)."""
    assumptions = Assumptions(
        device=args.device,
        gpus=args.gpus,
        zero_stage=args.zero,
        offload_optimizer=args.offload_optimizer,
        train_mfu=args.train_mfu,
        vllm_generation_mfu=args.vllm_mfu,
        transformers_generation_mfu=args.transformers_mfu,
        completion_fill=args.completion_fill,
        prompt_tokens=args.prompt_tokens,
        sft_examples=args.sft_examples,
        sft_fill=args.sft_fill,
        problems=args.problems,
    )
    plan = plan_recipes(args.arguments, assumptions, args.architecture)
    if args.json:
        print(json.dumps(plan_json(plan), indent=2))
    else:
        print_plan(plan)
    return plan["total"]["fits"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssp", description="Spectrum-to-Signal training for small reasoning models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _stage_parser(sub, "sft", "spectrum stage: multi-path SFT, pass@k probing, selection and fusion")
    _stage_parser(sub, "rl", "signal stage: GRPO with MGPO weighting over a curriculum of stages")
    demo = sub.add_parser("demo", help="the whole pipeline on the embedded tiny model and task (CPU, minutes)")
    demo.add_argument("--out", default="runs/demo", help="run folder (replaced if it exists)")
    demo.add_argument("--seed", type=int, default=0)
    merge = sub.add_parser("merge", help="weighted parameter average of HF model folders")
    merge.add_argument("models", nargs="+", help="model folders with safetensors weights")
    merge.add_argument("--out", required=True, help="output model folder")
    merge.add_argument("--weights", type=float, nargs="+", help="one weight per model (default: uniform)")
    _data_parser(sub)
    _eval_parser(sub)
    _generate_parser(sub)
    _plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Keep the console to the training bar and ssp's own bars: no per-load and per-map progress bars.
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sft":
            run_spectrum(load_recipe(args.recipe, args.overrides))
        elif args.command == "rl":
            run_signal(load_recipe(args.recipe, args.overrides))
        elif args.command == "demo":
            run_demo(args.out, args.seed)
        elif args.command == "merge":
            merge_models(args.models, args.weights, args.out)
            print(f"merged {len(args.models)} models into {args.out}")
        elif args.command == "data":
            run_data(args)
        elif args.command == "eval":
            run_eval_command(args)
        elif args.command == "generate":
            run_generate_command(args)
        elif args.command == "plan":
            return 0 if run_plan_command(args) else 1
    except (RecipeError, MergeError) as exc:
        print(f"ssp: error: {exc}", file=sys.stderr)
        return 2
    finally:
        release_distributed()
    return 0
