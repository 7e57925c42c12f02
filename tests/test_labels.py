"""Subdomain labels: a label field mapped through a table, unmapped labels counted."""

import json
from collections import Counter

from ssp.config import DataSource, FieldMap
from ssp.data.labels import MATH_SUBDOMAINS, LabelCounter, subdomain_of


def test_math_table_covers_every_math_type_and_only_the_probing_subdomains(shared_data):
    types = Counter()
    for name in ("train.jsonl", "test_minus_math500.jsonl"):
        for line in (shared_data / "math_train" / name).read_text().splitlines():
            types[json.loads(line)["type"]] += 1
    assert set(types) == set(MATH_SUBDOMAINS)  # all seven of MATH's types, none unmapped
    assert set(MATH_SUBDOMAINS.values()) == {"algebra", "geometry", "calculus", "statistics"}
    source = DataSource(fields=FieldMap(domain="type"), domain_map=MATH_SUBDOMAINS)
    counter = LabelCounter()
    for label, count in types.items():
        for _ in range(count):
            counter.label({"type": label}, source)
    report = counter.report()
    assert report["unmapped"] == 0 and sum(report["by_subdomain"].values()) == 12000
    assert report["by_subdomain"]["geometry"] == types["Geometry"]
    assert report["by_subdomain"]["calculus"] == types["Precalculus"]
    assert report["by_subdomain"]["statistics"] == types["Counting & Probability"]


def test_unmapped_labels_and_fixed_domains():
    source = DataSource(fields=FieldMap(domain="topic"), domain_map={"Geometry": "geometry"})
    counter = LabelCounter()
    labels = [counter.label(record, source) for record in ({"topic": "Geometry"}, {"topic": "Logic"}, {}, {})]
    assert labels == ["geometry", None, None, None]
    assert counter.report() == {
        "by_subdomain": {"geometry": 1},
        "unmapped": 3,
        "unmapped_labels": {"(no label)": 2, "Logic": 1},
    }
    fixed = DataSource(fields=FieldMap(domain=""), domain="code")
    assert subdomain_of({"topic": "Geometry"}, fixed) == "code"
    assert subdomain_of({"domain": "linear"}, DataSource()) == "linear"
