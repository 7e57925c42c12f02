"""Reading problems for the `ssp data` commands: validated, labelled by subdomain, grouped, decontaminated.

A problem is `{"problem", "answer", "domain", "reward", "tests" + "prelude" (code only), "candidates": [str, ...]}`:
a row of `ssp.data.rows`, read in its set-aside mode, whose solutions are the candidates to check. Records
repeating a problem text add their candidates to the first one (whose answer, tests and label are kept). Math
problems need an answer to check candidates against (and for the RL reward): `fields.answer`, or with
`fields.answer: ""` the last `\\boxed{}` of the row's first solution (MATH's `solution`). Code problems need tests,
and may carry a prelude (`fields.prelude`: code run before the program, such as LeetCode's imports and
`ListNode`); `default_prelude` fills it for code problems without one.
"""

from __future__ import annotations

from collections import Counter

from ssp.config import DataSource, DecontaminateConfig
from ssp.data.decontaminate import BenchmarkIndex, ContaminationLog, resolve_benchmarks
from ssp.data.labels import LabelCounter
from ssp.data.rows import RowReader
from ssp.rewards import is_code


def kinds_of(sources: list[DataSource]) -> set[str]:
    """The kinds (math, code) of the sources' rewards: the benchmarks decontamination checks by default."""
    return {"code" if is_code(source.reward) else "math" for source in sources}


def kind_of(problem: dict) -> str:
    return "code" if is_code(problem["reward"]) else "math"


class ProblemReader:
    """Reads every source into problems (`ssp.data.rows` in its set-aside mode) and counts what it sets aside:
    unmapped, no_answer, excluded."""

    def __init__(self, default_prelude: str = ""):
        self.default_prelude = default_prelude  # the prelude of code problems whose source gives none
        self.labels = LabelCounter()
        self.counts: Counter[str] = Counter()  # problems_in, accepted, unmapped, no_answer, ...

    def read(self, sources: list[DataSource], key: str, with_candidates: bool) -> list[dict]:
        reader = RowReader(
            needs_solutions=with_candidates, set_aside=True, default_prelude=self.default_prelude, labels=self.labels
        )
        problems = [_problem(row, with_candidates) for row in reader.read(sources, key)]
        self.counts["problems_in"] += len(problems) + len(reader.aside)
        self.counts["accepted"] += len(problems)
        self.counts.update(row["set_aside"] for row in reader.aside)
        aside = sum(len(row["solutions"]) for row in reader.aside) if with_candidates else 0
        self.counts["candidates_in"] += sum(len(p["candidates"]) for p in problems) + aside
        self.counts["candidates_set_aside"] += aside
        return problems

    def problem_counts(self, contamination: ContaminationLog | None, kept: int, **more: int) -> dict:
        """The report's `problems` section: read, set aside for each reason, and kept."""
        counts = {name: self.counts[name] for name in ("unmapped", "no_answer", "excluded")}
        dropped = len(contamination.dropped) if contamination else 0
        return {"in": self.counts["problems_in"], **counts, "contaminated": dropped, **more, "kept": kept}


def _problem(row: dict, with_candidates: bool) -> dict:
    """A row as the data commands use it: its solutions are the candidates to check."""
    problem = {key: row[key] for key in ("problem", "answer", "domain", "reward")}
    if is_code(row["reward"]):
        problem["tests"] = row["tests"]
        problem["prelude"] = row.get("prelude", "")  # "" when none: every code problem has one
    problem["candidates"] = row["solutions"] if with_candidates else []
    problem["origin"] = row["origin"]
    return problem


def decontaminate(problems: list[dict], config: DecontaminateConfig) -> tuple[list[dict], ContaminationLog | None]:
    """The problems sharing no n-gram with a chosen benchmark (default: those of the kinds the problems are)."""
    if not config.enabled or not problems:
        return problems, None
    names = config.benchmarks or sorted({kind_of(p) for p in problems})
    index = BenchmarkIndex.load(resolve_benchmarks(names, "decontaminate.benchmarks"), config.data_dir, config.n)
    log = ContaminationLog(index)
    return [p for p in problems if not log.is_contaminated(p["problem"], p["origin"])], log
