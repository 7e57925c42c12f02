"""Reward throughput on real data from ../shared/data, in one run.

Math: MATH-500 gold answers rendered as responses (each problem once with its own answer, once with `answer+1`),
verified serially in this process vs through the math-verify worker pool, both warmed up on MATH train answers.
Code: reference solutions of HumanEval, MBPP (test split) and rLLM's LeetCode set, run by a naive baseline (one plain
`python -c` subprocess per test, one after another, no isolation) vs the sandbox's batch path (`check_programs`).

    .venv/bin/python benchmarks/rewards.py [--mbpp 200] [--json results.json]

Prints rates and ratios; docs/benchmarks.md records a run. Pools are started before timing (start-up is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssp.rewards.code import LEETCODE_PRELUDE, check_programs  # noqa: E402
from ssp.rewards.math_answers import check_answers, default_workers, math_pool  # noqa: E402
from ssp.sandbox import get_sandbox  # noqa: E402

DATA = REPO / ".." / "shared" / "data"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def math_pairs(rows: list[dict]) -> tuple[list[str], list[str]]:
    """Each gold once answered right and once wrong (`gold+1`): every answer string is distinct, as in real use."""
    golds = [row["answer"] for row in rows]
    responses = [f"Putting it together, the answer is $\\boxed{{{g}}}$." for g in golds]
    responses += [f"Putting it together, the answer is $\\boxed{{{g}+1}}$." for g in golds]
    return responses, golds + golds


def bench_math(warmup: int) -> dict:
    _, startup = timed(lambda: math_pool().start())
    # Both paths first verify other data (MATH train answers): math-verify's parser (ANTLR) builds its caches
    # lazily, and long-lived workers, like a long-lived trainer process, have them warm.
    warm_responses, warm_golds = math_pairs(read_jsonl(DATA / "math_train" / "train.jsonl")[:warmup])
    check_answers(warm_responses, warm_golds, parallel=False)
    check_answers(warm_responses, warm_golds)
    responses, targets = math_pairs(read_jsonl(DATA / "math500" / "test.jsonl"))
    serial, serial_s = timed(lambda: check_answers(responses, targets, parallel=False))
    pooled, pool_s = timed(lambda: check_answers(responses, targets))
    agree = sum(a.correct == b.correct for a, b in zip(serial, pooled, strict=True))
    return {
        "verifications": len(responses),
        "correct": sum(r.correct for r in pooled),
        "serial_per_s": len(responses) / serial_s,
        "pool_per_s": len(responses) / pool_s,
        "pool_speedup": serial_s / pool_s,
        "pool_workers": default_workers(),
        "pool_startup_s": startup,
        "serial_and_pool_agree": agree == len(responses),
    }


def code_cases(mbpp_limit: int) -> list[dict]:
    """Each case: the program, its tests for the sandbox, and the separate scripts the naive baseline runs."""
    cases = []
    for row in read_jsonl(DATA / "humaneval" / "HumanEval.jsonl"):
        program = row["prompt"] + row["canonical_solution"]
        tests = row["test"] + f"\ncheck({row['entry_point']})"
        cases.append({"program": program, "tests": tests, "prelude": "", "scripts": [program + "\n" + tests]})
    mbpp = [r for r in read_jsonl(DATA / "mbpp" / "mbpp.jsonl") if 11 <= r["task_id"] <= 510][:mbpp_limit]
    for row in mbpp:
        setup = row["test_setup_code"]
        tests = setup + "\n" + "\n".join(row["test_list"])
        scripts = [f"{row['code']}\n{setup}\n{test}" for test in row["test_list"]]
        cases.append({"program": row["code"], "tests": tests, "prelude": "", "scripts": scripts})
    for row in json.loads((DATA / "rllm_code" / "leetcode_test.json").read_text()):
        tests = row["tests"]["functional"]
        script = f"{LEETCODE_PRELUDE}\n{row['solutions']}\n{tests}"
        cases.append({"program": row["solutions"], "tests": tests, "prelude": LEETCODE_PRELUDE, "scripts": [script]})
    return cases


def naive_run(script: str, timeout: float) -> bool:
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def bench_code(mbpp_limit: int, timeout: float) -> dict:
    cases = code_cases(mbpp_limit)
    tests = sum(len(case["scripts"]) for case in cases)
    _, startup = timed(get_sandbox)
    naive, naive_s = timed(lambda: [all(naive_run(s, timeout) for s in case["scripts"]) for case in cases])
    results, batch_s = timed(
        lambda: check_programs(
            [c["program"] for c in cases], [c["tests"] for c in cases], timeout, preludes=[c["prelude"] for c in cases]
        )
    )
    sandbox = get_sandbox()
    return {
        "programs": len(cases),
        "tests": tests,
        "naive_passed": sum(naive),
        "sandbox_passed": sum(r.passed for r in results),
        "naive_programs_per_s": len(cases) / naive_s,
        "naive_tests_per_s": tests / naive_s,
        "sandbox_programs_per_s": len(cases) / batch_s,
        "sandbox_tests_per_s": tests / batch_s,
        "sandbox_speedup": naive_s / batch_s,
        "sandbox_backend": sandbox.backend,
        "sandbox_zygotes": sandbox.pool.size,
        "sandbox_startup_s": startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbpp", type=int, default=200, help="MBPP test-split tasks to include (of 500)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per program run (MBPP 123 is slow)")
    parser.add_argument("--warmup", type=int, default=400, help="MATH train problems verified before timing math")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    # Other work on the machine skews every ratio here: the load average says how busy it was.
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")
    math = bench_math(args.warmup)
    print(
        f"math-verify: {math['verifications']} verifications ({math['correct']} correct); "
        f"serial {math['serial_per_s']:.0f}/s, pool of {math['pool_workers']} {math['pool_per_s']:.0f}/s "
        f"-> speed-up {math['pool_speedup']:.2f}x (pool start-up {math['pool_startup_s']:.1f}s, "
        f"results agree: {math['serial_and_pool_agree']})"
    )
    code = bench_code(args.mbpp, args.timeout)
    print(
        f"code: {code['programs']} programs / {code['tests']} tests; "
        f"naive {code['naive_programs_per_s']:.1f} programs/s ({code['naive_tests_per_s']:.1f} tests/s, "
        f"{code['naive_passed']} passed), sandbox [{code['sandbox_backend']}, {code['sandbox_zygotes']} zygotes] "
        f"{code['sandbox_programs_per_s']:.1f} programs/s ({code['sandbox_tests_per_s']:.1f} tests/s, "
        f"{code['sandbox_passed']} passed) -> speed-up {code['sandbox_speedup']:.1f}x "
        f"(sandbox start-up {code['sandbox_startup_s']:.1f}s)"
    )
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"math": math, "code": code, "load_average_end": load}, indent=2) + "\n")


if __name__ == "__main__":
    main()
