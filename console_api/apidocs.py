"""`GET /api/docs`: the API reference as one self-contained HTML page (no scripts, no external assets),
rendered from the same OpenAPI document as `/api/openapi.json`."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{border-bottom:1px solid #ddd;"
    "padding:.3rem .5rem;text-align:left;vertical-align:top}code{font:13px ui-monospace,monospace}"
    ".m{font-weight:600}"
)


@dataclass(frozen=True)
class Operation:
    """One route of an OpenAPI document, as both references show it."""

    method: str
    path: str
    summary: str
    role: str  # x-required-role, "none" without one
    has_body: bool
    query: list[str]  # the names of its query parameters


def operations_by_tag(doc: dict[str, Any]) -> dict[str, list[Operation]]:
    """The document's operations grouped by their first tag ("other" without one), by path then method
    as written — the one walk of the OpenAPI document for `/api/docs` and `docs/reference/api.md`."""
    by_tag: dict[str, list[Operation]] = {}
    for path, ops in sorted(doc.get("paths", {}).items()):
        for method, op in ops.items():
            query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            item = Operation(
                method.upper(),
                path,
                op.get("summary") or "",
                op.get("x-required-role") or "none",
                "requestBody" in op,
                query,
            )
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append(item)
    return by_tag


def render(doc: dict[str, Any]) -> str:
    by_tag = {
        tag: [
            f"<tr><td class=m><code>{escape(o.method)}</code></td><td><code>{escape(o.path)}</code></td>"
            f"<td>{escape(o.summary)}</td><td>{escape(o.role)}</td><td>{escape(', '.join(o.query))}</td></tr>"
            for o in ops
        ]
        for tag, ops in operations_by_tag(doc).items()
    }
    info = doc.get("info", {})
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(info.get('title', 'API'))} reference"
        f"</title><style>{_STYLE}</style><h1>{escape(info.get('title', 'API'))} "
        f"{escape(str(info.get('version', '')))}</h1><p>Every route of the console API. The machine-readable "
        "document: <a href=/api/openapi.json>/api/openapi.json</a>. Authenticate with "
        "<code>Authorization: Bearer TOKEN</code>.</p>"
    ]
    for tag in sorted(by_tag):
        parts.append(
            f"<h2>{escape(tag)}</h2><table><tr><th>method</th><th>path</th><th>what</th><th>role</th>"
            f"<th>query</th></tr>{''.join(by_tag[tag])}</table>"
        )
    return "".join(parts) + "</html>\n"
