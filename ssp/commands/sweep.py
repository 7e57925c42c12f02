"""`ssp sweep SWEEP.yaml`: every variant of a sweep over its seeds, with shared runs, intervals and costs."""

from __future__ import annotations

from ssp.commands import kept_on_interrupt
from ssp.runs import release_distributed
from ssp.sweep.plan import load_sweep
from ssp.sweep.run import dry_run, run_sweep


def add_arguments(parser, command: str) -> None:
    parser.add_argument("sweep", help="a sweep file, e.g. recipes/ablations/mgpo_lambda.yaml (docs/ablations.md)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides of the sweep file, e.g. seeds=[0]"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the runs and what they share; run nothing")
    mode.add_argument("--slurm", action="store_true", help="write Slurm arrays of the unfinished runs; run nothing")
    mode.add_argument("--collect", action="store_true", help="only write the reports (every run must be finished)")


def run(args) -> int:
    plan = load_sweep(args.sweep, args.overrides)
    if args.dry_run:
        print(dry_run(plan))
        return 0
    try:
        note = f"finished runs are kept in {plan.out}/runs; rerun the same command to resume"
        with kept_on_interrupt(note):
            run_sweep(plan, slurm=args.slurm, collect_only=args.collect, sweep_args=[args.sweep, *args.overrides])
        return 0
    finally:
        release_distributed()
