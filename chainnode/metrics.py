"""Prometheus text exposition (format 0.0.4) for the node's `/metrics`.

Only what the node already counts is exported; names follow Prometheus
conventions (`_total` for counters, base units).  Rendering is a pure
function of a list of samples, so it is tested without a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: Iterable[Sample], common_labels: Mapping[str, str]) -> str:
    """One HELP/TYPE block per metric name, then its samples, in the order given."""
    lines: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        assert sample.kind in ("gauge", "counter"), sample.kind
        if sample.name not in seen:
            seen.add(sample.name)
            lines.append(f"# HELP {sample.name} {sample.help}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        labels = {**common_labels, **sample.labels}
        label_text = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
        value = int(sample.value) if float(sample.value).is_integer() else sample.value
        lines.append(f"{sample.name}{{{label_text}}} {value}")
    return "\n".join(lines) + "\n"
