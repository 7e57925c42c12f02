"""`ssp data rl RECIPE`: RL prompt sets in the shape `ssp rl` reads through `rl.data`.

Math rows are `{"problem", "answer", "domain"}` (the gold answer normalised as the math rewards read it: the text
after GSM8K's `####`, a boxed solution's last box, numbers as text); code rows are
`{"problem", "tests", "prelude", "domain"}` (`prelude`: code the reward runs before the program, "" when none).
Both read with the default field mapping (code: `fields: {tests: tests, prelude: prelude}`). Problems are labelled
by subdomain, repeated problem texts kept once, and every problem sharing an n-gram with a benchmark is dropped.
"""

from __future__ import annotations

import time

from ssp.config import RLSetConfig
from ssp.data.decontaminate import check_config
from ssp.data.outputs import write_outputs
from ssp.data.problems import ProblemReader, decontaminate, kind_of, kinds_of
from ssp.recipe_checks import check_rl_set, report_path
from ssp.rewards.code import LEETCODE_PRELUDE
from ssp.tables import aligned_table


def check_rl_set_config(config: RLSetConfig) -> None:
    """The recipe's checks (`ssp.recipe_checks.check_rl_set`, run as it loads) and its decontamination benchmarks,
    which need the benchmark table."""
    check_rl_set(config)
    check_config(config.decontaminate, kinds_of(config.sources))


def run_rl_set(config: RLSetConfig) -> dict:
    """Write the RL prompt set; returns the report (also written next to the output)."""
    started = time.perf_counter()
    check_rl_set_config(config)
    reader = ProblemReader(default_prelude=LEETCODE_PRELUDE if config.leetcode_prelude else "")
    problems = reader.read(config.sources, "sources", with_candidates=False)
    problems, contamination = decontaminate(problems, config.decontaminate)
    rows = []
    by_subdomain: dict[str, int] = {}
    for problem in problems:
        row = {"problem": problem["problem"]}
        if kind_of(problem) == "code":
            row["tests"] = problem["tests"]
            row["prelude"] = problem["prelude"]  # "" when none: every code row has the column
        else:
            row["answer"] = problem["answer"]
        row["domain"] = problem["domain"]
        rows.append(row)
        by_subdomain[problem["domain"]] = by_subdomain.get(problem["domain"], 0) + 1

    report = {
        "output": config.output,
        "problems": reader.problem_counts(contamination, len(rows)),
        "by_subdomain": dict(sorted(by_subdomain.items())),
        "unmapped_labels": reader.labels.report()["unmapped_labels"],
        "decontamination": contamination.report() if contamination else None,
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_outputs(config.output, rows, report)
    print(aligned_table(["problems", "count"], [[name, value] for name, value in report["problems"].items()]))
    print(aligned_table(["subdomain", "problems"], [[d, n] for d, n in report["by_subdomain"].items()]))
    print(f"wrote {config.output} (report: {report_path(config.output)}) in {report['seconds']} s")
    return report
