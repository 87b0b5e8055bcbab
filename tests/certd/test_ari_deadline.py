"""Reading a CA's renewal information has a total deadline: a CA (or anyone in its place) that trickles
bytes cannot hold certd's only worker thread past `request_timeout_s`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certd.acme_client import AcmeIssuer, AriFailure

TRICKLE_FOR_S = 12.0  # the server gives up after this (bounded), far past the 1 s deadline under test


class TrickleServer:
    """Plain HTTP on loopback: /dir answers at once (with renewalInfo), anything else trickles one byte
    of a valid answer every 0.2 s — each read gets a byte well within a per-read timeout."""

    def __init__(self, trickle_headers: bool) -> None:
        self.trickle_headers = trickle_headers
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = conn.recv(4096)
            if request.startswith(b"GET /dir "):
                body = f'{{"renewalInfo": "http://127.0.0.1:{self.port}/ri"}}'.encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                return
            body = b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}}' + b" " * 500
            head = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            if not self.trickle_headers:
                conn.sendall(head + b"\r\n")
                out = body
            else:
                out = head + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n" + body
            t0 = time.monotonic()
            for i in range(len(out)):
                if self.stop.is_set() or time.monotonic() - t0 > TRICKLE_FOR_S:
                    return
                try:
                    conn.sendall(out[i:i + 1])
                except OSError:
                    return
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(params=[True, False], ids=["trickled-headers", "trickled-body"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    server = TrickleServer(trickle_headers=request.param)
    yield server
    server.close()


def test_a_trickling_answer_is_cut_at_the_total_deadline(trickle: TrickleServer, tmp_path: Path) -> None:
    issuer = AcmeIssuer(f"http://127.0.0.1:{trickle.port}/dir", tmp_path, request_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(AriFailure) as failure:
        issuer.renewal_info("AQI.AQ")
    elapsed = time.monotonic() - t0
    assert "within 1 s in all" in failure.value.message
    # A per-read timeout would wait for the whole trickle (12 s); the total deadline ends it at ~1 s.
    assert elapsed < 4.0, elapsed


def test_a_prompt_answer_is_still_read(tmp_path: Path) -> None:
    body = b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}}'
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                request = conn.recv(4096)
                payload = (f'{{"renewalInfo": "http://127.0.0.1:{port}/ri"}}'.encode()
                           if request.startswith(b"GET /dir ") else body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nRetry-After: 120\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answer = AcmeIssuer(f"http://127.0.0.1:{port}/dir", tmp_path, request_timeout_s=5.0).renewal_info("AQI.AQ")
    finally:
        thread.join(5)
        server.close()
    assert answer is not None and answer.retry_after_s == 120.0
    assert answer.window.end - answer.window.start == 86400
