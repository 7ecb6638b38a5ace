"""The metrics helpers: families built from plain values, exposition through
prometheus_client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from facility.metrics_http import counter, counter_by, gauge, text


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def test_families_render_with_escaped_labels_and_types() -> None:
    lab = {"site": 'a"b\\c'}
    body = text(lambda: [counter("x_things", "things", lab, 3),
                         gauge("x_depth", "depth", lab, 2.5),
                         counter_by("x_by", "by kind", lab, "kind", {"b": 2, "a": 1})])
    got = samples(body)
    assert got[("x_things_total", (("site", 'a"b\\c'),))] == 3
    assert got[("x_depth", (("site", 'a"b\\c'),))] == 2.5
    assert got[("x_by_total", (("kind", "a"), ("site", 'a"b\\c')))] == 1
    assert got[("x_by_total", (("kind", "b"), ("site", 'a"b\\c')))] == 2
    assert "# TYPE x_things_total counter" in body.splitlines()
    assert "# TYPE x_depth gauge" in body.splitlines()
    assert body.index('kind="a"') < body.index('kind="b"')  # sorted by key
