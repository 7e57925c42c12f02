"""Subdomain labels: a record's label field mapped through a recipe table onto the probing subdomains.

The spectrum stage probes math as four subdomains (algebra, geometry, calculus, statistics) and code as its own
domain. Sources label problems in their own words; `DataSource.domain_map` maps those words onto subdomains.
`MATH_SUBDOMAINS` is the table for MATH's seven `type` values (docs/data.md says why each goes where):

- Algebra, Intermediate Algebra, Prealgebra -> algebra: equations, polynomials, functions, arithmetic.
- Number Theory -> algebra: divisibility and modular arithmetic are symbolic manipulation of integers; none of the
  other three subdomains is closer (OpenR1-Math's `Number Theory` is mapped the same way in recipes/sft.yaml).
- Geometry -> geometry.
- Precalculus -> calculus: MATH has no calculus type; precalculus (trigonometry, vectors and matrices, complex
  numbers, parametric curves) is the material calculus builds on and the closest of the four.
- Counting & Probability -> statistics: the discrete probability and combinatorics of the four.
"""

from __future__ import annotations

from collections import Counter

from ssp.config import DataSource

MATH_SUBDOMAINS = {
    "Algebra": "algebra",
    "Intermediate Algebra": "algebra",
    "Prealgebra": "algebra",
    "Number Theory": "algebra",
    "Geometry": "geometry",
    "Precalculus": "calculus",
    "Counting & Probability": "statistics",
}


def raw_label(record: dict, source: DataSource) -> str:
    """The record's own label (its `fields.domain` column), else the source's fixed `domain`."""
    column = source.fields.domain
    if column and record.get(column) is not None:
        return str(record[column])
    return source.domain


def subdomain_of(record: dict, source: DataSource) -> str | None:
    """The record's subdomain, or None when `domain_map` has no entry for its label (an unmapped row)."""
    label = raw_label(record, source)
    if source.domain_map:
        return source.domain_map.get(label) or None
    return label or None


class LabelCounter:
    """Counts rows per subdomain and the labels no mapping covered, for the reports."""

    def __init__(self):
        self.subdomains: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()

    def label(self, record: dict, source: DataSource) -> str | None:
        subdomain = subdomain_of(record, source)
        if subdomain is None:
            self.unmapped[raw_label(record, source) or "(no label)"] += 1
        else:
            self.subdomains[subdomain] += 1
        return subdomain

    def report(self) -> dict:
        return {
            "by_subdomain": dict(sorted(self.subdomains.items())),
            "unmapped": sum(self.unmapped.values()),
            "unmapped_labels": dict(self.unmapped.most_common()),
        }
