"""Sampling presets, all in one place: the report's evaluation protocol, the recommended inference settings and
the task presets. Every field can be overridden (`resolve_sampling(preset, temperature=0.7)`, or `--temperature`
on the command line)."""

from __future__ import annotations

import dataclasses

from ssp.config import RecipeError, SamplingConfig
from ssp.recipe_checks import check_sampling

REPORT_MAX_NEW_TOKENS = 40_960

PRESETS: dict[str, SamplingConfig] = {
    # The report's protocol: pass@1 over 64 samples for math, 8 for code (DESIGN.md).
    "math": SamplingConfig(n=64, temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=REPORT_MAX_NEW_TOKENS),
    "code": SamplingConfig(n=8, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=REPORT_MAX_NEW_TOKENS),
    # The recommended inference configuration.
    "recommended": SamplingConfig(
        n=1, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=REPORT_MAX_NEW_TOKENS, repetition_penalty=1.1
    ),
    # Task presets: only temperature, top_p and the token budget are given; top-k stays off, no repetition penalty.
    "mathematical_reasoning": SamplingConfig(n=1, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=2048),
    "code_generation": SamplingConfig(n=1, temperature=0.8, top_p=0.90, top_k=0, max_new_tokens=4096),
    "creative_problem_solving": SamplingConfig(n=1, temperature=1.0, top_p=0.98, top_k=0, max_new_tokens=4096),
}


def resolve_sampling(preset: str, **overrides) -> SamplingConfig:
    """A copy of `preset` with the given fields replaced (None values are ignored), checked for sane values."""
    if preset not in PRESETS:
        raise RecipeError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    fields = {f.name for f in dataclasses.fields(SamplingConfig)}
    for name in overrides:
        if name not in fields:
            raise RecipeError(f"unknown sampling field {name!r} (known: {', '.join(sorted(fields))})")
    sampling = dataclasses.replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    check_sampling(sampling)
    return sampling
