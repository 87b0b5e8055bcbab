"""ACME Renewal Information (RFC 9773), the pure parts: a certificate's ARI id and the parsing of a
`renewalInfo` answer, which comes from the network and is checked like any outside input.

The fetch itself is `AcmeIssuer.renewal_info` (a thin shell); when to fetch again and which time to
pick inside the window are in `certd.schedule` (`ari_check_delay`, `ari_pick`).
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass

from cryptography import x509

MAX_BODY = 64 * 1024  # a renewalInfo object is a few hundred bytes; more is refused unread


class AriMalformed(ValueError):
    """A renewalInfo answer that cannot be used (the message says what is wrong)."""


@dataclass(frozen=True)
class RenewalWindow:
    start: float  # epoch seconds
    end: float
    explanation_url: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def cert_id(cert: x509.Certificate) -> str:
    """The certificate's ARI id: base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER
    content bytes, i.e. big-endian two's complement with no padding), or "" when the certificate has
    no authority key identifier (a self-signed fallback): ARI does not apply to it."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return ""
    if not aki.key_identifier:
        return ""
    serial = cert.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


def _timestamp(value: object, field: str) -> float:
    if not isinstance(value, str):
        raise AriMalformed(f"suggestedWindow.{field} must be an RFC 3339 timestamp string, got {value!r:.80}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise AriMalformed(f"suggestedWindow.{field} {value!r:.80} is not an RFC 3339 timestamp") from None
    if when.tzinfo is None:
        raise AriMalformed(f"suggestedWindow.{field} {value!r:.80} has no time zone offset")
    return when.timestamp()


def parse_renewal_info(body: bytes) -> RenewalWindow:
    """The suggested window of a renewalInfo answer, or AriMalformed naming what is wrong (RFC 9773
    §4.2: an end not after the start is malformed)."""
    if len(body) > MAX_BODY:
        raise AriMalformed(f"the renewalInfo answer is {len(body)} bytes, more than {MAX_BODY}")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise AriMalformed(f"the renewalInfo answer is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise AriMalformed("the renewalInfo answer is not a JSON object")
    window = doc.get("suggestedWindow")
    if not isinstance(window, dict):
        raise AriMalformed("the renewalInfo answer has no suggestedWindow object")
    start, end = _timestamp(window.get("start"), "start"), _timestamp(window.get("end"), "end")
    if end <= start:
        raise AriMalformed(f"suggestedWindow ends ({window['end']}) before it starts ({window['start']})")
    url = doc.get("explanationURL")
    return RenewalWindow(start, end, url[:500] if isinstance(url, str) else None)
