"""The access-log line the gate renders on its hot path: a JSON object with `ACCESS_LOG_FIELDS` in order,
whatever a client puts in the host, path, method or request id (escaped exactly as `json.dumps` escapes
them), with the times to the microsecond."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.ports import ACCESS_LOG_FIELDS, AccessLogEntry
from gate.accesslog import access_line


def args(i: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        at_us=1_796_000_000_123_456 + i,
        host="example.com",
        method="GET",
        path=f"/p/{i}",
        status=200,
        bytes_sent=10,
        duration_us=1500,
        upstream="127.0.0.1:9000",
        client_ip="10.0.0.1",
        request_id=f"r{i}",
        route=None,
        protocol="HTTP/1.1",
        bytes_received=0,
        upstream_us=-1,
    )
    return base | kw


CASES = [
    args(0),
    args(1, path='/"quoted"\\back\\slash', host='a"b', route="app.test/api", upstream_us=250),
    args(2, path="/\x00\x01\x1f\x7f\r\n\t", method="G\nET", request_id="id\r\nX-Injected: 1"),
    args(3, path="/é/ü/☃/\U0001f600", host="xn--bcher-kva.example", client_ip="::ffff:10.0.0.1"),
    args(4, path="/" + "x" * 70_000, bytes_sent=2**40),
    args(5, upstream=None, protocol="HTTP/2", status=502, bytes_received=12345, upstream_us=0),
    args(6, at_us=5, duration_us=0, upstream_us=123_456_789_001),  # leading zeros of the fractions
    args(7, path="/\ud800lone-surrogate"),
]


@pytest.mark.parametrize("a", CASES, ids=lambda a: a["request_id"][:4])
def test_the_line_is_json_escaped_as_json_dumps_does(a: dict[str, Any]) -> None:
    line = access_line(**a)
    assert line.count("\n") == 1 and line.endswith("\n")  # a control character or CRLF never splits a line
    assert line.isascii()
    parsed = json.loads(line)
    assert list(parsed) == list(ACCESS_LOG_FIELDS)
    strings = ("host", "method", "path", "upstream", "client_ip", "request_id", "route", "protocol")
    for k in strings:  # byte for byte what json.dumps writes for each string
        assert f'"{k}":{json.dumps(a[k])}' in line
    assert parsed == {
        **{k: a[k] for k in strings},
        "status": a["status"],
        "bytes_sent": a["bytes_sent"],
        "bytes_received": a["bytes_received"],
        "at": a["at_us"] / 1e6,
        "duration_ms": a["duration_us"] / 1e3,
        "upstream_ms": None if a["upstream_us"] < 0 else a["upstream_us"] / 1e3,
    }
    assert AccessLogEntry.from_line(line).request_id == a["request_id"]


def test_times_are_decimals_to_the_microsecond() -> None:
    line = access_line(**args(0, at_us=1_796_000_000_000_007, duration_us=12_003, upstream_us=40))
    assert '"at":1796000000.000007,' in line and '"duration_ms":12.003,' in line and '"upstream_ms":0.040}' in line


def test_the_fields_are_the_entry_fields_in_order() -> None:
    assert tuple(AccessLogEntry.__dataclass_fields__) == ACCESS_LOG_FIELDS


def test_cached_fragments_render_what_json_dumps_writes_even_under_a_flood_of_distinct_values() -> None:
    """The repeating strings' JSON text is cached (bounded): a value seen before, or many distinct
    hostile ones (more than the cache holds), still renders byte for byte what json.dumps writes."""
    from gate import accesslog

    hostile = ['a"b', "x\\y", "c\r\nd", "\x00", "é☃", "\ud800"]
    for i in range(3 * 1024 + 7):
        host = f"{hostile[i % len(hostile)]}{i % 1500}"
        a = args(i, host=host, method=hostile[i % 4], client_ip=host[::-1], route=host, upstream=host + ":1")
        for _ in range(2):  # the second time from the cache
            line = access_line(**a)
            for k in ("host", "method", "client_ip", "route", "upstream"):
                assert f'"{k}":{json.dumps(a[k])},' in line
    cache = getattr(accesslog, "_QUOTED", None)  # a C global (invisible) in the compiled build
    if cache is not None:
        assert len(cache) <= accesslog._QUOTED_MAX
