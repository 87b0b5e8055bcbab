"""ACME Renewal Information (RFC 9773), the pure parts: a certificate's ARI id and the parsing of what
a CA (or anyone in its place) answers at `renewalInfo`."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certd import pem
from certd.ari import MAX_BODY, AriMalformed, RenewalWindow, cert_id, parse_renewal_info

_KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(serial: int, aki: bytes | None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def test_cert_id_matches_the_rfc_example() -> None:
    # RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21
    # (a leading zero byte: the high bit of 0x87 would otherwise make the INTEGER negative).
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert cert_id(_cert(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize(
    ("serial", "encoded"), [(1, "AQ"), (0x7F, "fw"), (0x80, "AIA"), (0xFF, "AP8"), (0x0100, "AQA")]
)
def test_cert_id_serial_is_the_der_integer(serial: int, encoded: str) -> None:
    assert cert_id(_cert(serial, b"\x01\x02")) == f"AQI.{encoded}"


def test_no_authority_key_identifier_means_no_ari_id() -> None:
    assert cert_id(_cert(5, None)) == ""
    # The self-signed fallback has none: ARI is never asked about it.
    cert_pem, _ = pem.self_signed(["fallback.test"], datetime.datetime.now(datetime.UTC).timestamp())
    assert pem.read_info(cert_pem).ari_id == ""


@settings(max_examples=40, deadline=None)
@given(serial=st.integers(min_value=1, max_value=2**159 - 1), aki=st.binary(min_size=1, max_size=32))
def test_cert_id_agrees_with_the_acme_library(serial: int, aki: bytes) -> None:
    from acme.client import _renewal_info_path_component

    cert = _cert(serial, aki)
    assert cert_id(cert) == _renewal_info_path_component(cert)


def _doc(start: object = "2026-12-01T00:00:00Z", end: object = "2026-12-03T00:00:00Z", **extra: object) -> bytes:
    return json.dumps({"suggestedWindow": {"start": start, "end": end}, **extra}).encode()


T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(
    ("body", "window"),
    [
        (_doc(), RenewalWindow(T0, T0 + 2 * 86400)),
        (_doc(explanationURL="https://ca.example/why"), RenewalWindow(T0, T0 + 2 * 86400, "https://ca.example/why")),
        (_doc("2026-12-01T01:00:00+01:00", "2026-12-01T00:00:01.5Z"), RenewalWindow(T0, T0 + 1.5)),
        (_doc(explanationURL=7), RenewalWindow(T0, T0 + 2 * 86400)),  # a useless explanation is dropped
    ],
)
def test_parse_renewal_info(body: bytes, window: RenewalWindow) -> None:
    assert parse_renewal_info(body) == window


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"<html>busy</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "no suggestedWindow object"),
        (b'{"suggestedWindow": "soon"}', "no suggestedWindow object"),
        (_doc(start=None), "suggestedWindow.start must be an RFC 3339 timestamp string"),
        (_doc(end=1767225600), "suggestedWindow.end must be an RFC 3339 timestamp string"),
        (_doc(start="tomorrow"), "suggestedWindow.start 'tomorrow' is not an RFC 3339 timestamp"),
        (_doc(start="2026-12-01T00:00:00"), "has no time zone offset"),
        (_doc("2026-12-03T00:00:00Z", "2026-12-01T00:00:00Z"), "ends (2026-12-01T00:00:00Z) before it starts"),
        (_doc("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"), "before it starts"),  # empty: malformed (§4.2)
        (b"[" * 100_000, "more than"),
        (b"[" * 50_000 + b"]" * 50_000, "more than"),
        (b"[" * 30_000 + b"]" * 30_000, "not"),  # deep nesting within the size bound: refused, no crash
        (b" " * (MAX_BODY + 1), "more than"),
    ],
)
def test_parse_renewal_info_refuses_bad_answers(body: bytes, message: str) -> None:
    with pytest.raises(AriMalformed) as exc:
        parse_renewal_info(body)
    assert message in str(exc.value)


@given(st.binary(max_size=300))
def test_parse_renewal_info_never_crashes(body: bytes) -> None:
    try:
        w = parse_renewal_info(body)
    except AriMalformed:
        return
    assert w.end > w.start
