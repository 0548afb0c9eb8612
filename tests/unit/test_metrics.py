"""Prometheus rendering and the garbage-collection timer."""

from __future__ import annotations

import gc

from chainnode.core import metrics


def test_render_groups_help_and_type_and_escapes_labels() -> None:
    text = metrics.render(
        [
            metrics.Sample("x_total", "counter", "Things.", 3, {"peer": 'a"b'}),
            metrics.Sample("x_total", "counter", "Things.", 4, {"peer": "c"}),
            metrics.Sample("y", "gauge", "A level.", 0.5),
        ],
        {"node": "n1"},
    )
    assert text.splitlines() == [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{node="n1",peer="a\\"b"} 3',
        'x_total{node="n1",peer="c"} 4',
        "# HELP y A level.",
        "# TYPE y gauge",
        'y{node="n1"} 0.5',
    ]


def test_gc_timer_counts_real_collections_and_renders_each_metric_as_one_group() -> None:
    timer = metrics.GcTimer()
    timer.install()
    try:
        for _ in range(3):
            garbage = [[index] for index in range(50_000)]
            del garbage
            gc.collect()
    finally:
        timer.uninstall()
    assert timer.collections[2] >= 3 and timer.seconds[2] > 0
    text = metrics.render(timer.samples(), {"node": "n"})
    names = [line.split("{")[0] for line in text.splitlines() if not line.startswith("#")]
    assert names == ["chainnode_gc_seconds_total"] * 3 + ["chainnode_gc_collections_total"] * 3
    assert 'chainnode_gc_collections_total{generation="2",node="n"}' in text
    collections_before = list(timer.collections)
    gc.collect()
    assert timer.collections == collections_before, "uninstalled: no longer counting"
