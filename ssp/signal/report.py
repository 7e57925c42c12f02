"""Console table of the signal stage: test-split numbers before RL and after each stage."""

from __future__ import annotations

from ssp.evaluation.report import test_table


def print_signal_table(evaluations: dict[str, dict], ks: list[int]) -> None:
    print("\nTest split, before RL and after each stage:")
    print("\n".join(test_table(evaluations, ks)))
