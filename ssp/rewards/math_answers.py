"""Math answer checking with math-verify: the last `\\boxed{}` of a response against a gold answer.

Rules (docs/rewards.md has the full list):
- the answer is the content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed x`; none, or an empty one -> 0;
- a response longer than `max_response_chars`, or a boxed answer longer than `max_answer_chars` -> 0;
- gold answers may be LaTeX, numbers (int or float), zero-padded integers, GSM8K solutions (text after `####`);
- equivalence is math-verify's (`parse` both, `verify(gold, answer)`); a timeout or an error -> 0.

math-verify bounds its work with `signal.alarm`, which only works in a process's main thread. Scoring therefore runs
in a pool of worker processes that lives for the whole run (`math_pool()`, started at first use, stopped at exit);
each worker is also killed if it overruns a hard deadline, so a pathological expression costs a restart, not a hang.
`verify_in_process` is the in-process path (the workers' and the serial benchmark's) and raises if called anywhere
its timeout cannot work.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ssp.rewards._metrics import log_status_shares
from ssp.rewards.extract import completion_text, last_boxed
from ssp.sandbox.pool import TaskFailure, WorkerPool, workers_per_process

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5
"""Seconds math-verify may spend on each parse and each comparison (it takes whole seconds)."""
DEFAULT_MAX_RESPONSE_CHARS = 200_000
"""Longer responses score 0 (about 50K tokens: above the report's 40,960-token generation budget)."""
DEFAULT_MAX_ANSWER_CHARS = 1_000
"""Longer boxed answers score 0: every gold answer in the shipped benchmarks is under 200 characters."""

STATUSES = ("correct", "wrong", "no_answer", "too_long", "timeout", "error")

# LaTeX spacing used as a thousands separator (`1\,000`); math-verify already reads `1,000` and `1{,}000`.
_THOUSANDS_SPACE = re.compile(r"(?<=\d)(?:\\,|\\ |\\;|~)(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class MathResult:
    correct: bool
    status: str
    """One of STATUSES."""
    answer: str | None
    """The extracted boxed answer (None when there was none)."""


# -- extraction and normalisation (cheap, done in the calling process) -----------------------------------------------


def extract_answer(response: str) -> str | None:
    """The last boxed answer of a response, with LaTeX thousands spacing removed; None if absent or empty."""
    boxed = last_boxed(response)
    if boxed is None:
        return None
    answer = _THOUSANDS_SPACE.sub("", boxed.strip())
    return answer or None


def normalize_gold(gold, answer_format: str = "auto") -> str | None:
    """A gold answer as a dataset stores it -> the one string math-verify compares; None when the row has none.

    `answer_format` says how the dataset writes its golds:
    - `auto`, any dataset: a GSM8K solution becomes its text after the last `####`, a boxed solution its last box,
      a number its text (`27.0`); LaTeX thousands spacing (`1\\,000`) is dropped;
    - `latex`: the text as it is;
    - `integer`: an integer without its zero padding (AIME's `025` -> `25`);
    - `number`: a float, integral ones as integers (`27.0` -> `27`);
    - `gsm8k`: the text after `####`, without thousands commas.
    Surrounding `$` are dropped (auto, latex); an empty gold is None. A gold that is not of its format (or a bool)
    raises ValueError, which the data loaders turn into an error naming the row.
    """
    if gold is None:
        return None
    if isinstance(gold, bool):
        raise ValueError("a gold answer cannot be a bool")
    text = str(gold).strip()
    if answer_format == "integer":
        return str(int(text))
    if answer_format == "number":
        value = float(text)
        return str(int(value)) if value.is_integer() else text
    if answer_format == "gsm8k":
        if "####" not in text:
            raise ValueError("no '####' before the final answer")
        return text.rsplit("####", 1)[1].strip().replace(",", "") or None
    if answer_format == "latex":
        return text.strip("$").strip() or None
    if answer_format != "auto":
        raise ValueError(f"unknown answer_format {answer_format!r}")
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = _THOUSANDS_SPACE.sub("", text.strip().strip("$").strip())
    return text or None


# -- the in-process verifier (runs in the workers) -------------------------------------------------------------------


class _TimeoutRecorder(logging.Handler):
    """math-verify reports a timeout only as a log warning; this turns it into a status."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.timed_out = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Timeout"):
            self.timed_out = True


_recorder = _TimeoutRecorder()


def require_signal_timeouts() -> None:
    """Raise unless math-verify's `signal.alarm` timeout can work here (POSIX, main thread of the main interpreter)."""
    if not hasattr(signal, "alarm"):
        raise RuntimeError(f"math-verify's timeout needs signal.alarm, which {sys.platform} does not have")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "math-verify's timeout uses signal.alarm, which only works in the main thread; score through the worker "
            "pool (check_answers / math_verify) instead of calling verify_in_process from a thread"
        )


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    return _parse(gold, timeout=DEFAULT_TIMEOUT)


def _parse(text: str, timeout: int):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        f"${text}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=timeout
    )


def verify_in_process(answer: str, gold: str, timeout: int = DEFAULT_TIMEOUT) -> str:
    """Status (`correct`/`wrong`/`timeout`/`error`) of an extracted answer against a normalised gold, in this process.

    Main thread only: math-verify's timeout is `signal.alarm`, and off the main thread it cannot interrupt anything.
    """
    from math_verify import verify

    require_signal_timeouts()
    timeout = max(1, int(round(timeout)))
    math_verify_logger = logging.getLogger("math_verify")
    if _recorder not in math_verify_logger.handlers:
        math_verify_logger.addHandler(_recorder)
    _recorder.timed_out = False
    try:
        gold_parsed = _parse_gold(gold)
        answer_parsed = _parse(answer, timeout)
        if not gold_parsed:
            return "error"
        correct = bool(answer_parsed) and verify(gold_parsed, answer_parsed, timeout_seconds=timeout)
    except Exception:  # math-verify raises on inputs it cannot handle; for a reward that is simply not correct
        logger.debug("math-verify failed on %r vs %r", answer[:200], gold[:200], exc_info=True)
        return "error"
    if correct:
        return "correct"
    return "timeout" if _recorder.timed_out else "wrong"


# -- the worker pool -------------------------------------------------------------------------------------------------

_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def default_workers() -> int:
    """`SSP_MATH_WORKERS`, else the CPUs this process may use shared among the node's training processes (max 8)."""
    return workers_per_process("SSP_MATH_WORKERS", 8)


def math_pool() -> WorkerPool:
    """The process-wide math-verify pool, started at first use (a forked child gets its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.owner_pid != os.getpid():
            package_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
            argv = [sys.executable, "-c", "from ssp.rewards._math_worker import main; main()"]
            _pool = WorkerPool(argv, default_workers(), name="math-verify", env=env, cwd=package_root)
            logger.info("started %d math-verify worker processes", _pool.size)
        return _pool


def shutdown_math_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None and _pool.owner_pid == os.getpid():
            _pool.close()
        _pool = None


atexit.register(shutdown_math_pool)


# -- public API ------------------------------------------------------------------------------------------------------


def check_answers(
    responses,
    golds,
    *,
    timeout: int = DEFAULT_TIMEOUT,
    max_response_chars: int = DEFAULT_MAX_RESPONSE_CHARS,
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    parallel: bool = True,
) -> list[MathResult | None]:
    """Score each response against its gold answer; None where the gold is None (the row has no math answer).

    `parallel=False` verifies in this process (main thread only) instead of the worker pool.
    """
    responses, golds = list(responses), list(golds)
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    results: list[MathResult | None] = [None] * len(responses)
    pending: dict[tuple[str, str], list[int]] = {}  # identical (answer, gold) pairs, common within a GRPO group
    for i, (response, gold) in enumerate(zip(responses, golds, strict=True)):
        gold_text = normalize_gold(gold)
        if gold_text is None:
            continue
        text = completion_text(response)
        if len(text) > max_response_chars:
            results[i] = MathResult(False, "too_long", None)
            continue
        answer = extract_answer(text)
        if answer is None:
            results[i] = MathResult(False, "no_answer", None)
        elif len(answer) > max_answer_chars:
            results[i] = MathResult(False, "too_long", answer)
        else:
            pending.setdefault((answer, gold_text), []).append(i)
    pairs = list(pending)
    if parallel:
        tasks = [{"answer": answer, "gold": gold, "timeout": timeout} for answer, gold in pairs]
        # math-verify's own timeouts cover each parse and comparison; the hard deadline only catches C-level hangs.
        deadlines = [4 * max(1, timeout) + 5.0] * len(tasks)
        # Same gold, same worker: it parses each gold answer once (GRPO scores a group of answers per gold).
        replies = math_pool().run(tasks, deadlines, affinity=[gold for _, gold in pairs]) if tasks else []
        statuses = [_status_of(reply) for reply in replies]
    else:
        statuses = [verify_in_process(answer, gold, timeout) for answer, gold in pairs]
    for (answer, _gold), status in zip(pairs, statuses, strict=True):
        for i in pending[(answer, _gold)]:
            results[i] = MathResult(status == "correct", status, answer)
    return results


def _status_of(reply: dict | TaskFailure) -> str:
    if isinstance(reply, TaskFailure):
        logger.warning("math-verify worker %s (%s); scored 0", reply.reason, reply.detail)
        return "timeout" if reply.reason == "timeout" else "error"
    return reply["status"]


def check_answer(response: str, gold, **kwargs) -> MathResult:
    result = check_answers([response], [gold], **kwargs)[0]
    if result is None:
        raise ValueError("gold answer is empty")
    return result


def is_correct(response: str, gold: str) -> bool:
    """True when the last boxed answer of `response` is equivalent to `gold` under math-verify."""
    return check_answer(response, gold).correct


def math_verify(completions, answer, **kwargs) -> list[float | None]:
    """TRL reward: 1.0 for a correct last boxed answer, else 0.0; None for rows whose `answer` is None.

    Options (pass with functools.partial): timeout, max_response_chars, max_answer_chars. With TRL's `log_metric`
    it logs the share of each status (`rewards/math_verify/timeout`, ...). Other keyword arguments are the dataset's
    remaining columns and TRL's extras, and are ignored.
    """
    options = {key: kwargs[key] for key in ("timeout", "max_response_chars", "max_answer_chars") if key in kwargs}
    results = check_answers(completions, answer, **options)
    log_status_shares(kwargs.get("log_metric"), "math_verify", [r.status for r in results if r is not None], STATUSES)
    return [None if result is None else float(result.correct) for result in results]
