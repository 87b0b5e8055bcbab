"""The gate's open access-log batch (`gate.accesslog.AccessBatch`): lines rendered byte for byte as
`access_line` renders them, handed to the sink in order once the batch has the sink's line count or size,
after its interval, and at close; a failing sink never reaches the request."""

from __future__ import annotations

import asyncio
import json
import time

from gate.accesslog import AccessBatch, access_line


class Batches:
    """A sink that keeps each batch it gets (with the thresholds given)."""

    def __init__(self, lines: int = 512, chars: int = 256 * 1024, s: float = 0.1) -> None:
        self.access_batch_lines, self.access_batch_chars, self.access_batch_s = lines, chars, s
        self.got: list[tuple[list[str], float]] = []
        self.arrived = asyncio.Event()

    def record_lines(self, lines: list[str], at: float) -> None:
        self.got.append((lines, at))
        self.arrived.set()

    def ids(self) -> list[list[str]]:
        return [[json.loads(x)["request_id"] for x in b] for b, _ in self.got]


def add(batch: AccessBatch, i: int, path: str = "/") -> None:
    batch.add(100.0, 100.0015, "example.com", b"GET", path, 200, 10, None, "10.0.0.1", f"r{i}", "app", "1.1", 0, None)


async def test_lines_are_what_access_line_renders_with_the_start_on_the_wall_clock() -> None:
    sink = Batches(lines=1)
    batch = AccessBatch(sink, wall_clock=lambda: 1_796_000_000.0, timer=lambda: 200.0)
    batch.add(150.25, 150.2515, 'a"b', b"G\nET", "/p\r\n", 502, 7, "127.0.0.1:9", "::1", "rid", None, "2", 33, 0.25)
    batch.add(1.0, 2.0, "h", b"PATCH", "/", 200, 0, None, "1.2.3.4", "r2", "r", "1.0", 0, None)
    (one, at1), (two, at2) = sink.got
    assert at1 == 1_796_000_000.0 and at2 == 1_796_000_000.0
    assert one == [
        access_line(
            1_795_999_950_250_000,
            'a"b',
            "G\nET",
            "/p\r\n",
            502,
            7,
            1500,
            "127.0.0.1:9",
            "::1",
            "rid",
            None,
            "HTTP/2",
            33,
            250,
        )
    ]
    assert two == [
        access_line(
            1_795_999_801_000_000, "h", "PATCH", "/", 200, 0, 1_000_000, None, "1.2.3.4", "r2", "r", "HTTP/1.0", 0, -1
        )
    ]


async def test_a_batch_goes_by_count_by_size_and_at_close_in_order() -> None:
    sink = Batches(lines=100)
    batch = AccessBatch(sink, time.time, time.perf_counter)
    for i in range(250):
        add(batch, i)
    assert [len(b) for b in sink.ids()] == [100, 100]  # the last 50 wait in the open batch
    batch.close()  # the gate stops
    add(batch, 250)  # a line after that goes at once
    assert [x for b in sink.ids() for x in b] == [f"r{i}" for i in range(251)]

    by_size = Batches(chars=64 * 1024)
    batch = AccessBatch(by_size, time.time, time.perf_counter)
    for i in range(20):
        add(batch, i, "/" + "a" * 8000)  # a client chooses its path's length: the size bounds the batch too
    assert [len(b) for b in by_size.ids()] == [8, 8]  # ~8.2k chars a line: the 8th passes 64 KiB


async def test_a_partial_batch_goes_after_the_interval() -> None:
    sink = Batches(s=0.05)
    batch = AccessBatch(sink, time.time, time.perf_counter)
    add(batch, 0)
    add(batch, 1)
    assert sink.got == []
    await asyncio.wait_for(sink.arrived.wait(), 5)
    assert sink.ids() == [["r0", "r1"]]
    assert batch.timer_handle is None  # no timer while no batch is open


async def test_a_failing_sink_never_reaches_the_request() -> None:
    class Broken(Batches):
        def record_lines(self, lines: list[str], at: float) -> None:
            raise OSError("disk gone")

    batch = AccessBatch(Broken(lines=2), time.time, time.perf_counter)
    for i in range(5):
        add(batch, i)
    batch.close()
    assert batch.lines == []


async def test_lines_stay_exact_when_the_repeating_values_change_from_request_to_request() -> None:
    """The batch reuses the fragments of the previous line while host, method, upstream, client address,
    route and version repeat: every change of any of them (and back) must show in the very next line."""
    sink = Batches(lines=1)
    batch = AccessBatch(sink, wall_clock=lambda: 1_796_000_000.0, timer=lambda: 0.0)
    values = [
        ("a.example", b"GET", "10.0.0.1:80", "10.1.1.1", "app", "1.1"),
        ("a.example", b"POST", "10.0.0.1:80", "10.1.1.1", "app", "1.1"),
        ("b.example", b"POST", "10.0.0.1:80", "10.1.1.1", "app", "1.1"),
        ("b.example", b"POST", None, "10.1.1.1", "app", "1.1"),
        ("b.example", b"POST", None, "::1", "app", "1.1"),
        ("b.example", b"POST", None, "::1", None, "1.1"),
        ("b.example", b"POST", None, "::1", None, "2"),
        ("b.example", b"POST", None, "::1", None, "9\n"),
        ("", b"", "", "", "", ""),
        ("a.example", b"GET", "10.0.0.1:80", "10.1.1.1", "app", "1.1"),
    ]
    for i, (host, method, upstream, ip, route, version) in enumerate(values * 2):
        batch.add(1.0, 1.5, host, method, "/", 200, 1, upstream, ip, f"r{i}", route, version, 0, None)
        protocol = {"1.1": "HTTP/1.1", "2": "HTTP/2"}.get(version, f"HTTP/{version}")
        want = access_line(
            1_796_000_001_000_000, host, method, "/", 200, 1, 500_000, upstream, ip, f"r{i}", route, protocol, 0, -1
        )
        assert sink.got[-1][0] == [want]
        assert json.loads(want)["method"] == method.decode()
