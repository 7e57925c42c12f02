"""`ssp eval` and `ssp generate`: sample a model, on benchmarks (docs/evaluation.md) or on one problem."""

from __future__ import annotations

from pathlib import Path

from ssp.commands import kept_on_interrupt
from ssp.config import EvalSettings
from ssp.data.benchmarks import BENCHMARKS
from ssp.evaluation.run import run_eval
from ssp.generation.backends import BACKENDS
from ssp.generation.presets import PRESETS, resolve_sampling
from ssp.inference import REASONING_INSTRUCTIONS, InferenceEngine
from ssp.recipe_checks import check_model_path


def add_arguments(parser, command: str) -> None:
    if command == "eval":
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
    else:
        parser.add_argument("problem", help="the problem (the user message)")
        parser.add_argument("--model", required=True, help="a local model folder or a hub id")
        parser.add_argument(
            "--language", choices=[*REASONING_INSTRUCTIONS, "none"], default="en",
            help="wrap the problem with the step-by-step / \\boxed{} instruction in this language (none: send as is)",
        )  # fmt: skip
        _sampling_arguments(parser, "recommended")


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


def run(args) -> int:
    if args.command == "eval":
        run_eval_command(args)
    else:
        run_generate_command(args)
    return 0


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
    with kept_on_interrupt(f"finished samples are kept in {args.out}; rerun the same command to resume"):
        run_eval(settings)
    print((Path(args.out) / "results.md").read_text(), end="")
    print(f"report: {args.out}/results.json, results.md, pass_at_k.png; samples: {args.out}/samples/")


def run_generate_command(args) -> None:
    check_model_path(args.model, "--model", require_config=True)
    overrides = _sampling_overrides(args)
    resolve_sampling(args.preset, **overrides)  # bad sampling values fail before the model loads
    engine = InferenceEngine(
        args.model, backend=args.backend, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size
    )
    language = None if args.language == "none" else args.language
    completions = engine.generate(args.problem, args.preset, reasoning_language=language, seed=args.seed, **overrides)
    for i, completion in enumerate(completions):
        if len(completions) > 1:
            print(f"=== sample {i + 1} of {len(completions)}")
        print(completion.text)
        cut = " (truncated)" if completion.truncated else ""
        print(f"--- {completion.length} tokens{cut}")
        print("final answer:", completion.answer if completion.answer is not None else "(no \\boxed{} answer)")
