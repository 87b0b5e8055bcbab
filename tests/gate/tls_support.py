"""Helpers for the HTTPS / HTTP/2 tests: a throwaway CA (trustme), certificates published on a real
`CertificateBoard`, and the gate's TLS listener started on top of a `gate_factory` gate."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509

from core.ports import CertificateBoard, CertificateRef
from gate.tls import CertSelector, TlsListener, start_tls_listener
from tests.gate.conftest import Gate


@dataclass
class TlsGate:
    gate: Gate
    listener: TlsListener
    board: CertificateBoard
    ca: trustme.CA
    dir: Path
    _n: int = field(default=0)

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def selector(self) -> CertSelector:
        return self.listener.selector

    def publish(self, *names: str) -> CertificateRef:
        """Issue a leaf for `names` from the CA, write it under the test dir, publish it on the board."""
        self._n += 1
        leaf = self.ca.issue_cert(*names)
        cert_path = self.dir / f"leaf{self._n}.crt"
        key_path = self.dir / f"leaf{self._n}.key"
        cert_path.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key_path.write_bytes(leaf.private_key_pem.bytes())
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        ref = CertificateRef(
            names=tuple(names),
            cert_path=str(cert_path),
            key_path=str(key_path),
            not_after=cert.not_valid_after_utc.timestamp(),
            issuer="trustme test CA",
            serial=format(cert.serial_number, "x"),
            source="imported",
        )
        self.board.publish(ref)
        return ref

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def ca_file(self) -> str:
        path = self.dir / "ca.pem"
        if not path.exists():
            self.ca.cert_pem.write_to_path(str(path))
        return str(path)


async def start_tls(gate: Gate, tmp: Path, *, ca: trustme.CA | None = None) -> TlsGate:
    import time

    board = CertificateBoard()
    selector = CertSelector(board, tmp / "fallback", now=time.time)
    listener = await start_tls_listener(gate.server, "127.0.0.1", 0, selector)
    return TlsGate(gate, listener, board, ca or trustme.CA(), tmp)


def served_serial(der: bytes | None) -> str:
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


class RawH2:
    """A bare HTTP/2 client on the `h2` library over a real TLS connection, for protocol-level tests
    (it sends what it is told, including what a polite client would not, and acknowledges received
    data only when asked)."""

    def __init__(self, reader: Any, writer: Any, conn: Any) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.events: list[Any] = []
        self.closed = False

    @classmethod
    async def open(cls, tg: TlsGate, sni: str = "a.test", *, auto_ack: bool = False) -> RawH2:
        import asyncio

        from h2.config import H2Configuration
        from h2.connection import H2Connection

        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", tg.port, ssl=tg.client_context(["h2"]), server_hostname=sni, limit=1 << 22
            ),
            10,
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        conn = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        c = cls(reader, writer, conn)
        c.auto_ack = auto_ack
        return c

    auto_ack = False

    def send(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def request(
        self,
        path: str,
        *,
        host: str = "a.test",
        method: str = "GET",
        body: bytes | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
        end: bool | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", host.encode()),
            (b":path", path.encode()),
        ] + (extra or [])
        self.conn.send_headers(sid, headers, end_stream=body is None if end is None else end)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.send()
        return sid

    async def pump(self, until: Callable[[], bool], limit_s: float = 10.0) -> None:
        """Read and process frames until `until()` or the connection closes."""
        import asyncio

        from h2.events import DataReceived
        from h2.exceptions import ProtocolError

        async with asyncio.timeout(limit_s):
            while not until():
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    return
                try:
                    evs = self.conn.receive_data(data)
                except ProtocolError:
                    self.closed = True
                    return
                for ev in evs:
                    if self.auto_ack and isinstance(ev, DataReceived) and ev.flow_controlled_length:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                self.events += evs
                self.send()

    def of(self, kind: type, sid: int | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (sid is None or getattr(e, "stream_id", None) == sid)]

    def body(self, sid: int) -> bytes:
        from h2.events import DataReceived

        return b"".join(e.data for e in self.of(DataReceived, sid))

    def status(self, sid: int) -> int | None:
        from h2.events import ResponseReceived

        for e in self.of(ResponseReceived, sid):
            return int(dict(e.headers)[b":status"])
        return None

    def ended(self, sid: int) -> bool:
        from h2.events import StreamEnded, StreamReset

        return bool(self.of(StreamEnded, sid) or self.of(StreamReset, sid))

    def close(self) -> None:
        self.writer.close()
