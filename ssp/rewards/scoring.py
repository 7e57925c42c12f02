"""The one scorer from rows to rewards: every completion of every row scored with the row's `reward`, as a `Score`
(correct, status). Probing and both stages' test evaluations (`ssp.evaluation.evaluate.score_rows`), `ssp eval` and
`ssp data multipath` score through `score`; RL calls the reward functions of `ssp.rewards.REWARDS` itself.

Statuses, by reward (docs/rewards.md):
- `math_verify`: math-verify's, `ssp.rewards.math_answers.STATUSES` (correct, wrong, no_answer, too_long, timeout,
  error);
- `code_tests`: the sandbox's, `ssp.rewards.code.STATUSES` (ok, wrong, timeout, error, no_code, ...);
- `boxed_match`: correct, wrong, no_answer (no `\\boxed{}`);
- any other reward of the registry: correct (a full score of 1.0) or wrong.
A row its reward does not apply to (its column is None) scores not correct, with status None.

The code sandbox failing (`sandbox_error`) raises `SandboxFailure` rather than scoring wrong: a broken sandbox would
otherwise silently read as a model that writes no working code. `start_code_sandbox` checks that it starts at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ssp.coerce import RecipeError
from ssp.rewards import get_reward
from ssp.rewards.boxed import boxed_match
from ssp.rewards.code import check_responses
from ssp.rewards.extract import completion_text, last_boxed
from ssp.rewards.math_answers import check_answers
from ssp.sandbox import get_sandbox

# The row columns a reward may read; one goes to a reward when any of its rows has it (None for the others).
COLUMNS = ("answer", "tests", "prelude", "domain")


@dataclass(frozen=True)
class Score:
    correct: bool
    status: str | None
    """The reward's status (see the module docstring); None where the reward does not apply to the row."""
    detail: str = field(default="", compare=False)
    """What the checker said beyond the status (the sandbox's message for code), for error messages."""


class SandboxFailure(RecipeError):
    """The code sandbox does not start, or failed while scoring: code scores would be wrong, so the command stops
    (the CLI prints the message as one line). `reason` is the first line of what went wrong; a failure while scoring
    also carries the first `row` it hit and how many completions failed (`failed` of the `scored` code ones)."""

    def __init__(self, message: str, reason: str, *, row: dict | None = None, failed: int = 0, scored: int = 0):
        super().__init__(message)
        self.reason, self.row, self.failed, self.scored = reason, row, failed, scored

    def reworded(self, message: str) -> SandboxFailure:
        """The same failure in the caller's words (what it stops, how to resume)."""
        return SandboxFailure(message, self.reason, row=self.row, failed=self.failed, scored=self.scored)


def first_line(text: str, default: str) -> str:
    """The first line of a message, at most 200 characters: an error stays one line."""
    return (text.splitlines() or [default])[0][:200]


def start_code_sandbox() -> None:
    """Start the process-wide code sandbox (it runs a probe program), so that a machine without a working one stops
    in one line, before any model loads or any sampling."""
    try:
        get_sandbox()
    except (RuntimeError, OSError, ValueError) as exc:
        reason = first_line(str(exc), type(exc).__name__)
        message = f"the code sandbox cannot start ({reason}); see docs/sandbox.md for what it needs"
        raise SandboxFailure(message, reason) from None


def _boxed_scores(completions, answer, **columns) -> list[Score | None]:
    # Correctness is the reward's own; the box only tells a wrong answer from none.
    scores: list[Score | None] = []
    for completion, reward in zip(completions, boxed_match(completions, answer), strict=True):
        if reward is None:  # no gold: the reward does not apply
            scores.append(None)
        elif reward == 1.0:
            scores.append(Score(True, "correct"))
        else:
            scores.append(Score(False, "no_answer" if last_boxed(completion_text(completion)) is None else "wrong"))
    return scores


def _math_scores(completions, answer, **columns) -> list[Score | None]:
    return [None if r is None else Score(r.correct, r.status) for r in check_answers(completions, answer)]


def _code_scores(completions, tests, prelude=None, **columns) -> list[Score | None]:
    results = check_responses(completions, tests, prelude)
    return [None if r is None else Score(r.passed, r.status, r.message) for r in results]


# Rewards whose checker gives statuses; any other registered reward is scored by its function (correct: 1.0).
SCORERS: dict[str, Callable[..., list[Score | None]]] = {
    "boxed_match": _boxed_scores,
    "math_verify": _math_scores,
    "code_tests": _code_scores,
}


def _reward_scores(name: str) -> Callable[..., list[Score | None]]:
    reward = get_reward(name)

    def scores(completions, **columns) -> list[Score | None]:
        values = reward(completions, **columns)
        return [None if v is None else Score(v >= 1.0, "correct" if v >= 1.0 else "wrong") for v in values]

    return scores


def score(rows: list[dict], completions: list[list[str]], *, raise_on_sandbox_error: bool = True) -> list[list[Score]]:
    """The score of every completion of every row, with the row's reward: one batched call per reward.

    A reward gets the columns of `COLUMNS` that any of its rows has (None for its rows without), one entry per
    completion. A `sandbox_error` raises `SandboxFailure` unless `raise_on_sandbox_error` is False (it then scores
    wrong, as the RL reward does).
    """
    scores: list[list[Score]] = [[] for _ in rows]
    by_reward: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_reward[row["reward"]].append(index)
    for name, indices in by_reward.items():
        present = [c for c in COLUMNS if any(c in rows[i] for i in indices)]
        owners, texts, columns = [], [], {column: [] for column in present}
        for index in indices:
            for completion in completions[index]:
                owners.append(index)
                texts.append(completion)
                for column in present:
                    columns[column].append(rows[index].get(column))
        scorer = SCORERS[name] if name in SCORERS else _reward_scores(name)
        found = [Score(False, None) if s is None else s for s in scorer(texts, **columns)]
        failed = [i for i, s in enumerate(found) if s.status == "sandbox_error"]
        if failed and raise_on_sandbox_error:
            reason = first_line(found[failed[0]].detail, "no detail")
            scored = sum(s.status is not None for s in found)
            message = (
                f"the code sandbox failed on {len(failed)} of {scored} completions ({reason}); see docs/sandbox.md "
                "for what it needs"
            )
            raise SandboxFailure(message, reason, row=rows[owners[failed[0]]], failed=len(failed), scored=scored)
        for owner, s in zip(owners, found, strict=True):
            scores[owner].append(s)
    return scores
