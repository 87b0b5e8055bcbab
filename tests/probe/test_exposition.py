"""Prometheus text: escaping, names, grouping; parsed back by a strict reader of the format."""

from __future__ import annotations

import math
import re

import pytest

from probe.exposition import Reading, format_value, label_name, metric_name, render

# The text format's grammar (https://prometheus.io/docs/instrumenting/exposition_formats/) for samples
# without timestamps; used here and in the e2e test to check every line.
SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})?'
    r" (?P<value>NaN|[+-]Inf|[-+]?[0-9.eE+-]+)$"
)


def parse(text: str) -> dict[str, tuple[str, list[tuple[str, float]]]]:
    """A strict parser: name → (type, [(series, value)]); raises on any line out of the grammar."""
    families: dict[str, tuple[str, list[tuple[str, float]]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter"), line
            assert name not in families, f"family {name} declared twice"
            families[name] = (kind, [])
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) == current, f"{m.group(1)} outside its family"
        families[current][1].append((line.rsplit(" ", 1)[0], float(m.group("value"))))
    return families


def test_render_groups_escapes_and_parses() -> None:
    text = render(
        [
            Reading("host_load1", {}, 0.5),
            Reading("svc.cpu-percent", {"service": 'we"ird\\\nname', "9x": "a"}, 12.25),
            Reading("gate_requests_total", {"route": "r1", "class": "2xx"}, 10, kind="counter"),
            Reading("gate_requests_total", {"route": "r1", "class": "5xx"}, 2, kind="counter"),
            Reading("host_load1", {}, 0.7),  # duplicate series: first wins
        ]
    )
    fams = parse(text)
    assert fams["host_load1"] == ("gauge", [("host_load1", 0.5)])
    assert fams["gate_requests_total"][0] == "counter"
    assert len(fams["gate_requests_total"][1]) == 2
    series, value = fams["svc_cpu_percent"][1][0]
    assert value == 12.25
    assert 'service="we\\"ird\\\\\\nname"' in series and '_9x="a"' in series
    assert text.endswith("\n")


def test_names_and_values() -> None:
    assert metric_name("1a.b") == "_1a_b"
    assert label_name("__x") == "label___x"
    assert format_value(3.0) == "3"
    assert format_value(math.inf) == "+Inf"
    assert format_value(float("nan")) == "NaN"
    assert float(format_value(0.1)) == 0.1
    assert render([]) == ""


def test_prometheus_client_parses_it() -> None:
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is not installed")
    text = render([Reading("a_b", {"x": 'q"\n'}, 1.5), Reading("c_total", {}, 3, kind="counter")])
    fams = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert fams["a_b"].samples[0].labels == {"x": 'q"\n'}
    assert fams["a_b"].samples[0].value == 1.5
    assert fams["c"].type == "counter"  # the parser strips _total from counter family names
