"""One reader from the records of a data source to rows, with the per-record rules every loader shares.

A row is `{"problem", "solutions", "answer", "domain", "reward"}` plus `"tests"` (and `"prelude"`) for code:
- `problem`: the record's `fields.problem`, a non-empty string;
- `solutions`: `fields.solution`, a string or a list of strings;
- `answer` (math rows; None for code): `fields.answer`, or the last `\\boxed{}` of the record's first solution (MATH's
  reference solutions); the data commands (`set_aside`) write it normalised by
  `ssp.rewards.math_answers.normalize_gold`, the stages keep it as the source wrote it;
- `tests` (code rows): `fields.tests`, in a form `ssp.rewards.code` runs; `prelude`: `fields.prelude`, Python that
  compiles, run before the program (the reader's `default_prelude` for rows without one; left out when empty);
- `domain`: the record's label (`fields.domain`, else the source's `domain`) through `domain_map`; the source's
  `domains` and `limit` (at most that many problems per domain, in order) choose which problems are kept;
- `reward`: the source's. A source is code when its reward is `code_tests`; every other reward checks an answer.

Records repeating a problem text are one problem: the first gives its answer, tests, prelude and label, the later
ones add their solutions. A malformed record raises `DataError` naming the source, the row and the field. The
benchmarks (`ssp.data.benchmarks`) map their own columns and check their fields with the same functions.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from ssp.config import DataSource
from ssp.data.labels import LabelCounter, raw_label
from ssp.data.records import DataError, read_records
from ssp.rewards import is_code
from ssp.rewards.code import parse_tests
from ssp.rewards.extract import last_boxed
from ssp.rewards.math_answers import normalize_gold

# -- field checks (shared with the benchmarks, which name their fields their own way) --------------------------------


def required(record: dict, column: str, name: str, where: str, why: str = ""):
    """`record[column]`; a column that is unset, absent or None is an error naming `fields.<name>`."""
    if not column or record.get(column) is None:
        reason = f": {why}" if why else ""
        raise DataError(f"{where} has no field {column!r} (fields.{name}){reason}")
    return record[column]


def problem_text(value, what: str) -> str:
    """`value` as a problem statement; `what` names the row and field in the error."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{what} must be a non-empty string")
    return value


def gold_answer(gold, answer_format: str, what: str) -> str | None:
    """The gold through `normalize_gold`; a gold that is not of its format is an error naming `what`."""
    try:
        return normalize_gold(gold, answer_format)
    except ValueError as exc:
        raise DataError(f"{what} {str(gold).strip()[:40]!r} is not an {answer_format} answer: {exc}") from None


def checked_tests(tests, what: str):
    """`tests` when `ssp.rewards.code` can run them; an error naming `what` otherwise."""
    try:
        parse_tests(tests)
    except ValueError as exc:
        raise DataError(f"{what}: {exc}") from None
    return tests


def checked_prelude(prelude, what: str) -> str:
    """`prelude` when it is Python that compiles; an error naming `what` otherwise."""
    if not isinstance(prelude, str):
        raise DataError(f"{what} must be a string of code")
    error = _compile_error(prelude)
    if error:
        raise DataError(f"{what} does not compile: {error}")
    return prelude


@functools.lru_cache(maxsize=256)
def _compile_error(code: str) -> str | None:
    """Why `code` does not compile, or None; cached because most rows of a source share one prelude."""
    try:
        compile(code, "<prelude>", "exec")
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    return None


# -- domains and limits ----------------------------------------------------------------------------------------------


def _admitted(domain: str, source: DataSource, per_domain: Counter) -> bool:
    """Whether the source's `domains` and `limit` keep one more problem of `domain` (counted when kept)."""
    if (source.domains and domain not in source.domains) or (
        source.limit is not None and per_domain[domain] >= source.limit
    ):
        return False
    per_domain[domain] += 1
    return True


def keep_rows(rows: list[dict], source: DataSource) -> list[dict]:
    """The rows that the source's `domains` and `limit` keep, in order (rows built elsewhere: the synthetic task's
    and the benchmarks')."""
    per_domain: Counter[str] = Counter()
    return [row for row in rows if _admitted(row["domain"], source, per_domain)]


# -- the reader ------------------------------------------------------------------------------------------------------


@dataclass
class _Problem:
    row: dict
    source: DataSource
    where: str  # the first record's row, named in the errors of the checks made once a problem is kept
    reason: str | None  # why it is set aside before domains and limits apply: unmapped, no_answer


class RowReader:
    """Reads data sources into rows (module docstring).

    - `needs_solutions` (training, the candidates of `ssp data multipath`): every record has the solution column when
      the source names one. Otherwise solutions are read where a record has them, or where they are a math row's
      only gold (`fields.answer: ""`).
    - `needs_gold` (the rows are scored): math rows need an answer, code rows their tests. Training needs neither.
    - `set_aside`, the data commands' mode: a problem without a gold (`no_answer`), unmapped by `domain_map`
      (`unmapped`) or not kept by `domains` / `limit` (`excluded`) is set aside into `self.aside`, its reason under
      `"set_aside"`, for the reports to count; a math record must have the answer column `fields.answer` names;
      solutions are kept as they are, empty and repeated ones too, for the commands' checks to reject and count;
      rows carry `origin`, where the problem was first read.
      Without it (the stages), unmapped and excluded problems are dropped, a scored math row with no gold at all
      raises (an empty gold is kept as written), and solutions must be non-empty, each kept once.
    """

    def __init__(
        self,
        *,
        needs_solutions: bool = False,
        needs_gold: bool = True,
        set_aside: bool = False,
        default_prelude: str = "",
        labels: LabelCounter | None = None,
    ):
        self.needs_solutions = needs_solutions
        self.needs_gold = needs_gold
        self.set_aside = set_aside
        self.default_prelude = default_prelude
        # Counts the label of each problem's first record: per subdomain, and the labels domain_map does not map.
        self.labels = labels if labels is not None else LabelCounter()
        self.aside: list[dict] = []

    def read(self, sources: list[DataSource], key: str) -> list[dict]:
        """The kept rows of every source (`<key>.<i>` names source i in errors); records of one problem text are
        one problem across the sources, and a domain's `limit` counts the problems of every source."""
        return self._read([(source, f"{key}.{i}") for i, source in enumerate(sources)])

    def read_source(self, source: DataSource, key: str) -> list[dict]:
        """The kept rows of one source, `key` its name in errors (`data.train.0`)."""
        return self._read([(source, key)])

    def _read(self, named: list[tuple[DataSource, str]]) -> list[dict]:
        problems: dict[str, _Problem] = {}
        for source, key in named:
            self._add(source, key, problems)
        return self._keep(problems)

    def _add(self, source: DataSource, key: str, problems: dict[str, _Problem]) -> None:
        column = source.fields.problem
        for index, record in enumerate(read_records(source, key)):
            where = f"{key}: row {index}"
            text = problem_text(required(record, column, "problem", where), f"{where}: field {column!r}")
            solutions = self._solutions(record, source, where)
            problem = problems.get(text)
            if problem is None:
                problem = problems[text] = self._new_problem(text, record, source, key, where, solutions)
                if self.set_aside:
                    problem.row["origin"] = {"source": source.path, "row": index}
            kept = problem.row["solutions"]
            if self.set_aside:  # the data commands check every candidate and count the duplicates themselves
                kept.extend(solutions)
            else:
                kept.extend(s for s in solutions if s not in kept)

    def _solutions(self, record: dict, source: DataSource, where: str) -> list[str]:
        column = source.fields.solution
        only_gold = not is_code(source.reward) and not source.fields.answer  # the answer is the boxed solution
        # The stages also keep the paths of rows they only score (a probe row's reference solutions).
        if not column or not (self.needs_solutions or only_gold or (column in record and not self.set_aside)):
            return []
        value = required(record, column, "solution", where)
        solutions = [value] if isinstance(value, str) else value
        # Training rows need real paths; the data commands' candidates may be empty (a check rejects them).
        if not isinstance(solutions, list) or not all(
            isinstance(s, str) and (self.set_aside or s.strip()) for s in solutions
        ):
            raise DataError(f"{where}: field {column!r} must be a string or a list of strings")
        return solutions

    def _new_problem(
        self, text: str, record: dict, source: DataSource, key: str, where: str, solutions: list[str]
    ) -> _Problem:
        fields = source.fields
        if not source.domain_map and not raw_label(record, source):
            raise DataError(f"{where}: no domain (field {fields.domain!r}) and {key}.domain is not set")
        domain = self.labels.label(record, source)
        row = {"problem": text, "solutions": [], "answer": None, "domain": domain, "reward": source.reward}
        reason = None if domain is not None else "unmapped"
        if is_code(source.reward):
            if fields.tests or self.needs_gold:
                why = "code problems are checked by their tests"
                row["tests"] = required(record, fields.tests, "tests", where, why)
            if fields.prelude:  # checked once the problem is kept (_keep)
                row["prelude"] = required(record, fields.prelude, "prelude", where)
        else:
            row["answer"] = self._answer(record, source, where, solutions)
            if row["answer"] is None and self.needs_gold and self.set_aside and reason is None:
                reason = "no_answer"  # e.g. a MATH solution whose \boxed{} is empty
        return _Problem(row, source, where, reason)

    def _answer(self, record: dict, source: DataSource, where: str, solutions: list[str]) -> str | None:
        column = source.fields.answer
        gold = None
        if column and self.set_aside:
            gold = required(record, column, "answer", where, "math problems are checked against it")
        elif column:
            gold = record.get(column)
        if gold is None and solutions:
            gold = last_boxed(solutions[0])
        if gold is None and self.needs_gold and not self.set_aside:
            raise DataError(f"{where} has no answer: no field {column!r} and no \\boxed{{}} in a solution")
        if not self.set_aside:
            # The stages keep the gold as the source wrote it: math_verify normalises it itself, and boxed_match
            # compares it with the completion's box under one key (normalising only the gold would break that).
            return None if gold is None else str(gold)
        # The data commands write normalised golds; an empty one (the source lost it) is None and set aside.
        return gold_answer(gold, "auto", f"{where}: field {column!r}")

    def _keep(self, problems: dict[str, _Problem]) -> list[dict]:
        """The problems kept, in the order they were first read; the others set aside (or dropped)."""
        per_domain: Counter[str] = Counter()
        rows = []
        for problem in problems.values():
            row, reason = problem.row, problem.reason
            if reason is None and not _admitted(row["domain"], problem.source, per_domain):
                reason = "excluded"
            if reason is not None:
                if self.set_aside:
                    self.aside.append({**row, "set_aside": reason})
                continue
            if is_code(row["reward"]):
                self._check_code(row, problem.source.fields, problem.where)
            rows.append(row)
        return rows

    def _check_code(self, row: dict, fields, where: str) -> None:
        """A kept code row's tests must run and its prelude compile (rows set aside are not checked further)."""
        if "tests" in row:
            checked_tests(row["tests"], f"{where}: field {fields.tests!r}")
        prelude = checked_prelude(row["prelude"], f"{where}: field {fields.prelude!r}") if "prelude" in row else ""
        row["prelude"] = prelude or self.default_prelude
        if not row["prelude"]:
            del row["prelude"]
