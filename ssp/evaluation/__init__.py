"""Sampling, scoring and pass@k: one code path for probing, test evaluation and RL evaluation."""

from ssp.evaluation.passk import pass_at_k

__all__ = ["pass_at_k"]
