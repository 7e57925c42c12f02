"""Reading problems for the `ssp data` commands: validated, labelled by subdomain, grouped, decontaminated.

A problem is `{"problem", "answer", "domain", "reward", "tests" + "prelude" (code only), "candidates": [str, ...]}`;
records repeating a problem text add their candidates to the first one (whose answer, tests and label are kept).
Math problems need an answer to check candidates against (and for the RL reward): `fields.answer`, or with
`fields.answer: ""` the last `\\boxed{}` of the row's first solution (MATH's `solution`), as the stages' loader
reads it. Code problems need tests, and may carry a prelude (`fields.prelude`: code run before the program, such
as LeetCode's imports and `ListNode`); `default_prelude` fills it for code problems without one.
"""

from __future__ import annotations

from collections import Counter

from ssp.config import DataSource, RecipeError
from ssp.data.decontaminate import BenchmarkIndex, ContaminationLog, DecontaminateConfig, resolve_benchmarks
from ssp.data.labels import LabelCounter, raw_label
from ssp.data.records import DataError, read_records
from ssp.recipe_checks import check_source
from ssp.rewards.code import parse_tests
from ssp.rewards.extract import last_boxed
from ssp.rewards.math_answers import normalize_gold


def check_sources(sources: list[DataSource], key: str) -> None:
    if not sources:
        raise RecipeError(f"{key}: at least one source is required")
    for i, source in enumerate(sources):
        if source.path == "synthetic":
            raise RecipeError(f"{key}.{i}.path: a file or hub dataset is required (the synthetic task is built in)")
        check_source(source, f"{key}.{i}")
        if source.reward != "code_tests" and not source.fields.answer and not source.fields.solution:
            raise RecipeError(
                f"{key}.{i}.fields: math problems need an answer: set fields.answer, or fields.solution to take "
                "the last \\boxed{} of each row's first solution"
            )


def kinds_of(sources: list[DataSource]) -> set[str]:
    """The kinds (math, code) of the sources' rewards: the benchmarks decontamination checks by default."""
    return {"code" if source.reward == "code_tests" else "math" for source in sources}


def kind_of(problem: dict) -> str:
    return "code" if problem["reward"] == "code_tests" else "math"


class ProblemReader:
    """Reads every source into problems and counts what it sets aside: unmapped, no_answer, excluded."""

    def __init__(self, default_prelude: str = ""):
        self.default_prelude = default_prelude  # the prelude of code problems whose source gives none
        self.labels = LabelCounter()
        self.counts: Counter[str] = Counter()  # problems_in, accepted, unmapped, no_answer, ...

    def read(self, sources: list[DataSource], key: str, with_candidates: bool) -> list[dict]:
        by_text: dict[str, dict] = {}
        per_domain: Counter[str] = Counter()
        problems = []
        for s, source in enumerate(sources):
            source_key = f"{key}.{s}"
            for i, record in enumerate(read_records(source, source_key)):
                where = f"{source_key}: row {i}"
                text = _required(record, source.fields.problem, "problem", where)
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{where}: field {source.fields.problem!r} must be a non-empty string")
                candidates = _candidates(record, source, where) if with_candidates else []
                self.counts["candidates_in"] += len(candidates)
                problem = by_text.get(text)
                if problem is None:
                    problem = self._new_problem(text, record, source, source_key, where)
                    problem["origin"] = {"source": source.path, "row": i}
                    by_text[text] = problem
                    domain = problem["domain"]
                    if domain is None:
                        problem["set_aside"] = "unmapped"
                    elif problem["reward"] != "code_tests" and problem["answer"] is None:
                        problem["set_aside"] = "no_answer"  # e.g. a MATH solution whose \boxed{} is empty
                    elif (source.domains and domain not in source.domains) or (
                        source.limit is not None and per_domain[domain] >= source.limit
                    ):
                        problem["set_aside"] = "excluded"
                    else:
                        per_domain[domain] += 1
                        problems.append(problem)
                    self.counts["problems_in"] += 1
                    self.counts[problem.get("set_aside", "accepted")] += 1
                if "set_aside" in problem:
                    self.counts["candidates_set_aside"] += len(candidates)
                else:
                    problem["candidates"].extend(candidates)
        return problems

    def problem_counts(self, contamination: ContaminationLog | None, kept: int, **more: int) -> dict:
        """The report's `problems` section: read, set aside for each reason, and kept."""
        counts = {name: self.counts[name] for name in ("unmapped", "no_answer", "excluded")}
        dropped = len(contamination.dropped) if contamination else 0
        return {"in": self.counts["problems_in"], **counts, "contaminated": dropped, **more, "kept": kept}

    def _new_problem(self, text: str, record: dict, source: DataSource, key: str, where: str) -> dict:
        if not source.domain_map and not raw_label(record, source):
            raise DataError(f"{where}: no domain (field {source.fields.domain!r}) and {key}.domain is not set")
        problem = {"problem": text, "answer": None, "domain": self.labels.label(record, source)}
        problem["reward"] = source.reward
        if source.reward == "code_tests":
            tests = _required(record, source.fields.tests, "tests", where, "code problems are checked by their tests")
            try:
                parse_tests(tests)
            except ValueError as exc:
                raise DataError(f"{where}: field {source.fields.tests!r}: {exc}") from None
            problem["tests"] = tests
            problem["prelude"] = _prelude(record, source, where) or self.default_prelude
        elif source.fields.answer:
            raw = _required(record, source.fields.answer, "answer", where, "math problems are checked against it")
            problem["answer"] = normalize_gold(raw)  # None when empty: the problem is set aside as no_answer
        else:
            # fields.answer empty: the gold is the last \boxed{} of the first solution (MATH's reference solutions).
            solutions = _candidates(record, source, where)
            boxed = last_boxed(solutions[0]) if solutions else None
            problem["answer"] = None if boxed is None else normalize_gold(boxed)  # None: set aside as no_answer
        problem["candidates"] = []
        return problem


def _required(record: dict, column: str, name: str, where: str, why: str = ""):
    if not column or record.get(column) is None:
        reason = f": {why}" if why else ""
        raise DataError(f"{where} has no field {column!r} (fields.{name}){reason}")
    return record[column]


def _prelude(record: dict, source: DataSource, where: str) -> str:
    """The row's prelude (empty when the source has no prelude column); it must be Python that compiles."""
    column = source.fields.prelude
    if not column:
        return ""
    prelude = _required(record, column, "prelude", where)
    if not isinstance(prelude, str):
        raise DataError(f"{where}: field {column!r} must be a string of code")
    try:
        compile(prelude, "<prelude>", "exec")
    except SyntaxError as exc:
        raise DataError(f"{where}: field {column!r} does not compile: {exc.msg} (line {exc.lineno})") from None
    return prelude


def _candidates(record: dict, source: DataSource, where: str) -> list[str]:
    column = source.fields.solution
    if not column:
        return []
    value = _required(record, column, "solution", where)
    candidates = [value] if isinstance(value, str) else value
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise DataError(f"{where}: field {column!r} must be a string or a list of strings")
    return candidates


def decontaminate(problems: list[dict], config: DecontaminateConfig) -> tuple[list[dict], ContaminationLog | None]:
    """The problems sharing no n-gram with a chosen benchmark (default: those of the kinds the problems are)."""
    if not config.enabled or not problems:
        return problems, None
    names = config.benchmarks or sorted({kind_of(p) for p in problems})
    index = BenchmarkIndex.load(resolve_benchmarks(names, "decontaminate.benchmarks"), config.data_dir, config.n)
    log = ContaminationLog(index)
    return [p for p in problems if not log.is_contaminated(p["problem"], p["origin"])], log
