"""Prometheus text exposition (format 0.0.4) for the node's `/metrics`.

Only what the node already counts is exported; names follow Prometheus
conventions (`_total` for counters, base units).  Rendering is a pure
function of a list of samples, so it is tested without a node.
"""

from __future__ import annotations

import gc
import time
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


class GcTimer:
    """Seconds the interpreter's cyclic garbage collector ran, per generation (gc.callbacks).

    A node holds hundreds of thousands of small objects (pooled and memoised
    transactions, caches), so a full collection is not free; this says how much.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation", 2)
        if 0 <= generation <= 2:
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def samples(self) -> list[Sample]:
        """Each metric's samples together, as the exposition format wants them."""
        metrics = (
            (
                "chainnode_gc_seconds_total",
                "Time spent in the cyclic garbage collector.",
                [round(seconds, 6) for seconds in self.seconds],
            ),
            ("chainnode_gc_collections_total", "Cyclic garbage collections.", self.collections),
        )
        return [
            Sample(name, "counter", help_text, value, {"generation": str(generation)})
            for name, help_text, values in metrics
            for generation, value in enumerate(values)
        ]
