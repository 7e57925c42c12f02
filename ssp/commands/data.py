"""`ssp data multipath | rl | decontaminate`: the stages' training data (docs/data.md)."""

from __future__ import annotations

import time
from pathlib import Path

from ssp.config import (
    DEFAULT_N,
    DataSource,
    DecontaminateConfig,
    MultipathConfig,
    RecipeError,
    RLSetConfig,
    load_recipe,
)
from ssp.data.decontaminate import SettingKeys, check_config, decontaminate_records
from ssp.data.outputs import write_outputs
from ssp.data.records import DataError, read_records
from ssp.data.rl_sets import run_rl_set
from ssp.generation.multipath import run_multipath
from ssp.recipe_checks import check_output, looks_like_local_path, report_path

FLAGS = SettingKeys(n="--n", benchmarks="--benchmarks", data_dir="--data-dir", flags=True)
"""`ssp data decontaminate`'s names for the settings that recipes call decontaminate.n, .benchmarks, .data_dir."""


def add_arguments(parser, command: str) -> None:
    commands = parser.add_subparsers(dest="data_command", required=True)
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


def run(args) -> int:
    if args.data_command == "multipath":
        run_multipath(load_recipe(args.recipe, args.overrides, schema=MultipathConfig))
    elif args.data_command == "rl":
        run_rl_set(load_recipe(args.recipe, args.overrides, schema=RLSetConfig))
    else:
        run_decontaminate(args)
    return 0


def run_decontaminate(args) -> dict:
    """`ssp data decontaminate`: the input rows (unchanged) that share no n-gram with a benchmark, and the report."""
    started = time.perf_counter()
    check_output(args.out, args.overwrite, "--out")
    benchmarks = [name.strip() for name in args.benchmarks.split(",")]
    names = check_config(DecontaminateConfig(benchmarks=benchmarks, data_dir=args.data_dir, n=args.n), set(), FLAGS)
    for path in args.inputs:
        if looks_like_local_path(path) and not Path(path).expanduser().exists():
            raise RecipeError(f"input {path}: file not found")
    sources = [DataSource(path=path, split=args.split, name=args.name) for path in args.inputs]
    inputs = [(source.path, read_records(source, f"input {source.path}")) for source in sources]
    for path, rows in inputs:
        for i, record in enumerate(rows):
            if not isinstance(record.get(args.field), str):
                raise DataError(f"input {path}: row {i} has no text field {args.field!r} (--field)")

    kept, log = decontaminate_records(inputs, args.field, names, args.data_dir, args.n)
    total = sum(len(rows) for _, rows in inputs)
    report = {"inputs": list(args.inputs), "output": args.out, "rows_in": total, "rows_kept": len(kept)}
    report.update(log.report())
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_outputs(args.out, kept, report)
    print(log.table())
    print(f"kept {len(kept)} of {total} rows in {report['seconds']} s -> {args.out} (report: {report_path(args.out)})")
    return report
