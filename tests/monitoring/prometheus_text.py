"""Reading a Prometheus text exposition back, for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples_of(text: str, model: str) -> dict[tuple[str, object], float]:
    """One model's samples by (sample name, its outcome or bucket edge as a float, or None)."""
    samples: dict[tuple[str, object], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") == model:
                extra = sample.labels.get("outcome") or (float(sample.labels["le"]) if "le" in sample.labels else None)
                samples[(sample.name, extra)] = sample.value
    return samples
