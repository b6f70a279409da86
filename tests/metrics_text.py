"""The Prometheus text format, parsed with prometheus_client's own parser, for tests that read /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Series, float]:
    """Every sample of an exposition, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict[Series, float], name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (a counter not yet incremented)."""
    return parsed.get((name, frozenset(labels.items())), 0.0)


def label_values(parsed: dict[Series, float], name: str, label: str) -> set[str]:
    """The values ``label`` takes across the samples of ``name``."""
    return {dict(labels)[label] for sample, labels in parsed if sample == name and label in dict(labels)}
