"""`ssp sft`, `ssp rl` and `ssp demo`: the training stages, which keep their finished work and resume."""

from __future__ import annotations

from ssp.commands import kept_on_interrupt
from ssp.config import load_recipe
from ssp.demo import run_demo
from ssp.runs import release_distributed
from ssp.signal.run import run_signal
from ssp.spectrum.run import run_spectrum

RESUME = "rerun the same command to resume"


def add_arguments(parser, command: str) -> None:
    if command == "demo":
        parser.add_argument("--out", default="runs/demo", help="run folder; rerun with the same one to resume")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--overwrite", action="store_true", help="delete an earlier demo in --out and start over")
        for stage in ("sft", "rl"):
            parser.add_argument(
                f"--{stage}",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help=f"override a key of recipes/demo/{stage}.yaml (repeatable), e.g. --{stage} {stage}.max_steps=50",
            )
        return
    parser.add_argument("recipe", help=f"a recipe YAML file, e.g. recipes/demo/{command}.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output_dir=runs/x sft.max_steps=50"
    )


def run(args) -> int:
    try:
        if args.command == "demo":
            with kept_on_interrupt(f"finished work is kept in {args.out}; {RESUME} (--overwrite starts over)"):
                run_demo(args.out, args.seed, args.sft, args.rl, overwrite=args.overwrite)
            return 0
        recipe = load_recipe(args.recipe, args.overrides)
        with kept_on_interrupt(f"finished work is kept in {recipe.output_dir}; {RESUME} (overwrite=true starts over)"):
            (run_spectrum if args.command == "sft" else run_signal)(recipe)
        return 0
    finally:
        release_distributed()
