"""The `ssp` command (also `python -m ssp` and `accelerate launch -m ssp`).

This module stays light: it lists the commands and imports a command's module (`ssp.commands.*`) only when that
command runs. torch, transformers, trl and datasets take seconds to import, and `ssp --help`, `ssp --version` or a
mistyped command need none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ssp import __version__
from ssp.coerce import RecipeError
from ssp.commands import Interrupted

# command -> (the module that adds its arguments and runs it, its one-line help)
COMMANDS = {
    "sft": ("ssp.commands.stages", "spectrum stage: multi-path SFT, pass@k probing, selection and fusion"),
    "rl": ("ssp.commands.stages", "signal stage: GRPO with MGPO weighting over a curriculum of stages"),
    "demo": ("ssp.commands.stages", "the whole pipeline on the embedded tiny model and task (CPU, minutes)"),
    "sweep": (
        "ssp.commands.sweep",
        "research ablations: variants x seeds through both stages, shared runs, intervals, costs (docs/ablations.md)",
    ),
    "merge": ("ssp.commands.merge", "weighted parameter average of HF model folders"),
    "data": ("ssp.commands.data", "build SFT and RL data: multipath, decontaminate, rl (docs/data.md)"),
    "eval": (
        "ssp.commands.inference",
        "benchmark evaluation: pass@1 with standard error, pass@k, maj@n, report (docs/evaluation.md)",
    ),
    "generate": (
        "ssp.commands.inference",
        "answer one problem with a model and print the reasoning and the final answer",
    ),
    "serve": (
        "ssp.commands.serve",
        "serve a model behind an OpenAI-compatible API: chat, completions, streaming, metrics (docs/serving.md)",
    ),
    "validate": (
        "ssp.commands.serve",
        "measure a model or a server: accuracy, pass rate, latency, tokens/s, memory, concurrency (docs/serving.md)",
    ),
    "plan": (
        "ssp.commands.plan",
        "before a run: tokens, FLOPs, memory per GPU, fit, device-hours and dollars of each stage (docs/plan.md)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The top level: the command names and --version. A command's own arguments come from its module."""
    parser = argparse.ArgumentParser(prog="ssp", description="Spectrum-to-Signal training for small reasoning models.")
    parser.add_argument("--version", action="version", version=f"ssp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # its --help is the command parser's
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status 0; 1 when `ssp plan` finds a stage that does not fit; 2 on an error in the
    arguments, a recipe, the data or a merge, and on Ctrl-C (each one line on stderr)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Keep the console to the training bar and ssp's own bars: no per-load and per-map progress bars. Read by
    # huggingface_hub (and transformers through it) and datasets when they load, which is after this line.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    top, rest = build_parser().parse_known_args(argv)
    module_name, help_text = COMMANDS[top.command]
    try:
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"ssp {top.command}", description=help_text)
        module.add_arguments(parser, top.command)
        args = parser.parse_args(rest)
        args.command = top.command
        return module.run(args)
    except RecipeError as exc:
        print(f"ssp: error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        kept = str(exc) if isinstance(exc, Interrupted) else "nothing was written"
        if os.environ.get("RANK", "0") == "0":  # under `accelerate launch` every process gets the Ctrl-C
            print(f"ssp: interrupted: {kept}", file=sys.stderr)
        return 2
