"""The intervals of a sweep: over seeds (Student's t), and of a paired difference (a bootstrap over problems).

A variant's metric over S seeds is reported as its mean and the 95% t-interval mean +/- t(0.975, S-1) * sd / sqrt(S):
the spread of training itself (initialisation, data order, sampling). A difference to the baseline is paired: both
variants are scored on the same test problems with the same seed, so per problem d = p_variant - p_baseline (p a
problem's fraction of correct samples). Each problem's differences are averaged over the seeds, the problems are
resampled with replacement (the same draw for every seed, which share the test set), and the 2.5th and 97.5th
percentiles of the mean over the resamples are the interval: the uncertainty from which problems happen to be in
the test set, for these seeds' models.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

# t(0.975, df) for df = 1..30; beyond, the normal quantile (4% below t at df 31, 2% at df 60).
T_975 = tuple(
    float(value)
    for value in """
    12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131
    2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042
""".split()
)


def t_quantile(df: int) -> float:
    return T_975[df - 1] if df <= len(T_975) else statistics.NormalDist().inv_cdf(0.975)


def seed_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of the mean over seeds; one seed has no interval (NaN bounds)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_bootstrap(differences: list[dict[str, float]], resamples: int = 2000, seed: int = 0) -> dict:
    """The mean over seeds of each seed's mean per-problem difference, with the bootstrap's standard error and 95%
    percentile interval; `differences` holds one {problem: difference} per seed.

    Seeds tested on the same problems (a sweep's: the test split does not depend on the run's seed) are resampled
    together: one draw of problems per resample, applied to every seed, since which problems are in the test set is
    shared by the seeds and resampling each seed apart would treat a problem's common effect as independent noise
    and understate the spread by up to sqrt(S). Seeds tested on different problems are resampled apart."""
    rng = np.random.default_rng(seed)
    mean = statistics.fmean(statistics.fmean(per_problem.values()) for per_problem in differences)
    problems = list(differences[0])
    if all(per_problem.keys() == differences[0].keys() for per_problem in differences):
        # the mean over seeds of per-seed means equals the per-problem mean over seeds, resampled
        per_problem_mean = np.mean([[d[problem] for problem in problems] for d in differences], axis=0)
        picks = rng.integers(0, len(problems), size=(resamples, len(problems)))
        combined = per_problem_mean[picks].mean(axis=1)
    else:
        combined = np.zeros(resamples)
        for per_problem in differences:
            values = np.asarray(list(per_problem.values()), dtype=float)
            picks = rng.integers(0, len(values), size=(resamples, len(values)))
            combined += values[picks].mean(axis=1)
        combined /= len(differences)
    low, high = np.quantile(combined, [0.025, 0.975])
    return {"mean": mean, "se": float(combined.std()), "low": float(low), "high": float(high)}
