"""Exact-match correctness for answers that compare as normalised strings (the embedded task's integers)."""

from __future__ import annotations

from ssp.rewards.extract import completion_text, last_boxed


def exact_match_key(answer: str) -> str:
    """The string two answers must share to match: spaces, `$` and a trailing period dropped; integers compare by
    value, so `025` == `25` and `+3` == `3`."""
    text = answer.strip().strip("$").strip().rstrip(".").replace(" ", "")
    try:
        return str(int(text))
    except ValueError:
        return text


def boxed_match(completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the last `\\boxed{}` of the completion equals the gold answer after normalisation, else 0.0; None
    for a row without a gold (the reward does not apply: `\\boxed{None}` must not match it)."""
    scores = []
    for completion, gold in zip(completions, answer, strict=True):
        if gold is None:
            scores.append(None)
            continue
        predicted = last_boxed(completion_text(completion))
        scores.append(float(predicted is not None and exact_match_key(predicted) == exact_match_key(str(gold))))
    return scores
