"""The `ssp` command (also `python -m ssp` and `accelerate launch -m ssp`)."""

from __future__ import annotations

import argparse
import os
import sys

import datasets
import transformers

from ssp.config import RecipeError, load_recipe
from ssp.demo import run_demo
from ssp.signal.run import run_signal
from ssp.spectrum.fusion import MergeError, merge_models
from ssp.spectrum.run import run_spectrum


def _stage_parser(sub, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("recipe", help="a recipe YAML file, e.g. recipes/demo/sft.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output_dir=runs/x sft.max_steps=50"
    )


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
    except (RecipeError, MergeError) as exc:
        print(f"ssp: error: {exc}", file=sys.stderr)
        return 2
    return 0
