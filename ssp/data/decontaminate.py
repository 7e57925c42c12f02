"""Decontamination: drop every training problem that shares a normalised word n-gram with a benchmark problem.

Normalisation (the report's): lower-case, every run of punctuation, symbols and whitespace becomes one space, and
the text is split into words, so `$x^2+1$` reads `x 2 1`. n-grams are n consecutive words (n = 10 by default).
A text shorter than n words is one gram, the whole text. A benchmark problem shorter than n words (31 of MATH-500's,
such as `Simplify $\\sqrt{242}$.`) also matches a training text whose normalised words contain its own as one run
of whole words, so a short problem is caught inside a longer one too.
Benchmarks are loaded by name with `ssp.data.benchmarks.load_benchmark` (local files in `data_dir`, or the hub);
those without a hub copy (`spec.hub_id` None) need `data_dir`, which is checked before any work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ssp.config import DEFAULT_N, DecontaminateConfig, RecipeError
from ssp.data.benchmarks import BENCHMARKS, load_benchmark
from ssp.tables import aligned_table

GROUPS = ("all", "math", "code")
"""Names that stand for several benchmarks: every benchmark, or those of one kind."""

_SEPARATORS = re.compile(r"[\W_]+")  # anything that is not a letter or a digit


def normalize_words(text: str) -> list[str]:
    return _SEPARATORS.sub(" ", text.lower()).split()


def ngrams(text: str, n: int) -> list[str]:
    """The text's word n-grams in order (the whole text as one gram when it has fewer than n words)."""
    words = normalize_words(text)
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def resolve_benchmarks(names: list[str], key: str = "benchmarks") -> list[str]:
    """Expand the groups `all`, `math` and `code`; an unknown name is an error listing the known ones."""
    resolved: list[str] = []
    for name in names:
        if name == "all":
            chosen = list(BENCHMARKS)
        elif name in ("math", "code"):
            chosen = [b for b, spec in BENCHMARKS.items() if spec.kind == name]
        elif name in BENCHMARKS:
            chosen = [name]
        else:
            known = ", ".join([*GROUPS, *BENCHMARKS])
            raise RecipeError(f"{key}: unknown benchmark {name!r} (known: {known})")
        resolved.extend(b for b in chosen if b not in resolved)
    if not resolved:
        raise RecipeError(f"{key}: at least one benchmark is required")
    return resolved


def without_hub_copy(names: list[str]) -> list[str]:
    """The benchmarks that only load from a data dir (no public hub copy in their shape)."""
    return [name for name in names if BENCHMARKS[name].hub_id is None]


@dataclass(frozen=True)
class SettingKeys:
    """What a caller names the step's settings in its error messages: a recipe's keys or a command's flags."""

    n: str = "decontaminate.n"
    benchmarks: str = "decontaminate.benchmarks"
    data_dir: str = "decontaminate.data_dir"
    flags: bool = False  # command-line flags: a missing data dir is a flag to pass, not a key to set


def check_config(config: DecontaminateConfig, kinds: set[str], keys: SettingKeys = SettingKeys()) -> list[str]:
    """Check the step's settings before any work; `kinds` (math, code) are those of the sources' rewards, the
    default benchmarks. Returns the benchmarks the step compares against (none when it is disabled)."""
    if not config.enabled:
        return []
    if config.n < 1:
        raise RecipeError(f"{keys.n}: must be >= 1, got {config.n}")
    names = resolve_benchmarks(config.benchmarks or sorted(kinds), keys.benchmarks)
    local_only = ", ".join(without_hub_copy(names))
    if config.data_dir is None and local_only and keys.flags:
        raise RecipeError(
            f"{keys.benchmarks}: no hub copy of {local_only}; pass {keys.data_dir} (a folder laid out like "
            f"../shared/data) or choose other benchmarks, e.g. {keys.benchmarks} math"
        )
    if config.data_dir is None and local_only:
        raise RecipeError(
            f"{keys.data_dir}: required for {local_only} (no hub copy): set it to a folder laid out like "
            f"../shared/data, or leave {local_only} out of {keys.benchmarks}"
        )
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise RecipeError(f"{keys.data_dir}: folder not found: {config.data_dir}")
    return names


class BenchmarkIndex:
    """Every n-gram of every chosen benchmark's problems, with the first benchmark row that has it."""

    def __init__(self, problems: dict[str, list[str]], n: int = DEFAULT_N):
        self.n = n
        self.grams: dict[str, dict[str, int]] = {}
        # Problems shorter than n words have no n-gram a longer text could share: they are matched as phrases.
        self.short: dict[str, dict[str, int]] = {}
        self.sizes = {name: len(texts) for name, texts in problems.items()}
        for name, texts in problems.items():
            grams: dict[str, int] = {}
            short: dict[str, int] = {}
            for row, text in enumerate(texts):
                for gram in ngrams(text, n):
                    grams.setdefault(gram, row)
                words = normalize_words(text)
                if 0 < len(words) < n:
                    short.setdefault(" ".join(words), row)
            self.grams[name] = grams
            self.short[name] = short

    @classmethod
    def load(cls, names: list[str], data_dir: str | None, n: int = DEFAULT_N) -> BenchmarkIndex:
        problems = {}
        for name in tqdm(names, desc="loading benchmarks", leave=False):
            problems[name] = [row["problem"] for row in load_benchmark(name, data_dir=data_dir)]
        return cls(problems, n)

    def matches(self, text: str) -> list[dict]:
        """One entry per benchmark sharing an n-gram with `text`: the benchmark, its row and the first such n-gram."""
        grams = ngrams(text, self.n)
        padded = f" {' '.join(normalize_words(text))} "  # spaces on both sides: phrases match whole words only
        found = []
        for name, index in self.grams.items():
            gram = next((g for g in grams if g in index), None)
            if gram is not None:
                found.append({"benchmark": name, "benchmark_row": index[gram], "ngram": gram})
                continue
            phrase = next((p for p in self.short[name] if f" {p} " in padded), None)
            if phrase is not None:
                found.append({"benchmark": name, "benchmark_row": self.short[name][phrase], "ngram": phrase})
        return found

    def summary(self) -> dict:
        return {name: {"problems": self.sizes[name], "ngrams": len(grams)} for name, grams in self.grams.items()}


class ContaminationLog:
    """The dropped rows, each with what it matched, and per-benchmark totals (a row may match several)."""

    def __init__(self, index: BenchmarkIndex):
        self.index = index
        self.checked = 0
        self.dropped: list[dict] = []

    def is_contaminated(self, text: str, where: dict) -> bool:
        self.checked += 1
        found = self.index.matches(text)
        if found:
            self.dropped.append({**where, "problem": text[:200], "matches": found})
        return bool(found)

    def report(self) -> dict:
        by_benchmark = {name: 0 for name in self.index.grams}
        for row in self.dropped:
            for match in row["matches"]:
                by_benchmark[match["benchmark"]] += 1
        return {
            "n": self.index.n,
            "benchmarks": self.index.summary(),
            "checked": self.checked,
            "dropped": len(self.dropped),
            "dropped_by_benchmark": by_benchmark,
            "dropped_rows": self.dropped,
        }

    def table(self) -> str:
        report = self.report()
        rows = [
            [name, info["problems"], info["ngrams"], report["dropped_by_benchmark"][name]]
            for name, info in report["benchmarks"].items()
        ]
        rows.append(["any", "", "", report["dropped"]])
        return aligned_table(["benchmark", "problems", f"{self.index.n}-grams", "rows dropped"], rows)


def decontaminate_records(
    inputs: list[tuple[str, list[dict]]],
    problem_field: str,
    names: list[str],
    data_dir: str | None,
    n: int = DEFAULT_N,
) -> tuple[list[dict], ContaminationLog]:
    """The records (unchanged, in order) whose `problem_field` shares no n-gram with the benchmarks `names`, and
    the log of those dropped, each located by its input (the name paired with its records) and row."""
    log = ContaminationLog(BenchmarkIndex.load(names, data_dir, n))
    kept = []
    with tqdm(total=sum(len(rows) for _, rows in inputs), desc="decontaminating") as progress:
        for name, rows in inputs:
            for i, record in enumerate(rows):
                if not log.is_contaminated(record[problem_field], {"input": name, "row": i}):
                    kept.append(record)
                progress.update()
    return kept, log
