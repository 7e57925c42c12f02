"""`ssp plan`: what a run will cost and whether each stage fits, before any expensive work (docs/plan.md)."""

from __future__ import annotations

import json

from ssp.plan import DEVICES, KNOWN_ARCHITECTURES, Assumptions, plan_json, plan_recipes, print_plan


def add_arguments(parser, command: str) -> None:
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


def run(args) -> int:
    """Print the plan; exit status 1 when a stage does not fit."""
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
    return 0 if plan["total"]["fits"] else 1
