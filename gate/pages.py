"""Error and notice pages the gate answers itself: small, HTML or JSON by `Accept`, with the request id."""

from __future__ import annotations

import html
import json

from gate.h1 import REASONS


def wants_json(accept: bytes) -> bool:
    """JSON when the client prefers it over HTML (API clients), else HTML."""
    if not accept:
        return False
    a = accept.lower()
    return b"json" in a and b"text/html" not in a


def error_page(
    status: int, message: str, request_id: str, *, accept: bytes = b"", code: str = ""
) -> tuple[bytes, bytes]:
    """(body, content type) for an error answered by the gate."""
    reason = REASONS.get(status, "Error")
    if wants_json(accept):
        body = json.dumps(
            {
                "error": {
                    "code": code or reason.lower().replace(" ", "_"),
                    "status": status,
                    "message": message,
                    "request_id": request_id,
                }
            },
            separators=(",", ":"),
        )
        return body.encode(), b"application/json"
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{status} {reason}</title></head>"
        f'<body style="font-family:sans-serif;margin:3em"><h1>{status} {reason}</h1>'
        f"<p>{html.escape(message)}</p><p><small>request id {html.escape(request_id)} &middot; "
        f"infracore gate</small></p></body></html>\n"
    )
    return page.encode(), b"text/html; charset=utf-8"
