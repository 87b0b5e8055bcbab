"""Routes of logbus: search (`GET /api/logs`), download of a time window, live tail over SSE, the list
of services with logs, and an admin ingest endpoint for scripts and cron jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from console_api.api import Api, ApiRequest, parse_int
from core.errors import BadRequest
from logbus import (
    Batch,
    LogbusService,
    Matcher,
    Query,
    check_service_name,
    decode_cursor,
    encode_cursor,
    parse_time,
    record_dict,
)

MAX_LIMIT = 10_000
# A page's line text stops at about this much (the page continues by its cursor): JSON of 10,000 lines of
# 16 KiB each would be a 160 MB body built on the loop.
MAX_RESULT_BYTES = 4 * 1024 * 1024
# One search request reads at most about this much (then answers with what it found and a cursor to
# continue), so a keyword hunt over gigabytes cannot hold a worker thread and the GIL for seconds.
SCAN_BUDGET_BYTES = 256 * 1024 * 1024
SSE_HISTORY_LIMIT = 5_000
_POLL_S = 0.5  # how often a quiet tail stream looks for server shutdown or a departed client

_FILTERS = {
    "stream": "stdout or stderr (default: both; logbus markers always shown)",
    "q": "keyword, case-insensitive",
    "regex": "regular expression (RE2 syntax: no backreferences or lookaround) on the line's text",
}


def _service(name: str, field: str = "service") -> str:
    try:
        return check_service_name(name)
    except ValueError as e:
        raise BadRequest(str(e), details={"field": field}) from None


def _time(req: ApiRequest, *names: str) -> float | None:
    for name in names:
        value = req.query.get(name)
        if value:
            try:
                return parse_time(value, time.time(), what=name)
            except ValueError as e:
                raise BadRequest(str(e), details={"field": name}) from None
    return None


def _streams(req: ApiRequest) -> frozenset[str] | None:
    value = req.query.get("stream", "")
    if value in ("", "both", "all"):
        return None
    if value not in ("stdout", "stderr"):
        raise BadRequest(f"stream must be stdout or stderr, not {value!r}", details={"field": "stream"})
    return frozenset({value})


def _cursor(value: str | None) -> dict[str, tuple[int, int]] | None:
    if not value:
        return None
    try:
        return decode_cursor(value)
    except ValueError as e:
        raise BadRequest(str(e), details={"field": "cursor"}) from None


async def _matcher(req: ApiRequest) -> Matcher:
    """The request's filters, compiled off the loop (a user's regex: bounded, but not free)."""
    keyword, regex, streams = req.query.get("q") or None, req.query.get("regex") or None, _streams(req)
    try:
        return await asyncio.to_thread(Matcher, keyword, regex, streams)
    except ValueError as e:
        raise BadRequest(
            str(e),
            details={"field": "regex" if "regex" in str(e) else "q"},
            hint="RE2 syntax: https://github.com/google/re2/wiki/Syntax" if regex else None,
        ) from None


def _matching(matcher: Matcher, data: bytes, service: str) -> list[dict[str, Any]]:
    """The lines of a live batch that pass the filters, as dicts (run in a thread: a 1 MiB batch)."""
    return [record_dict(data[a:b], service) for a, b in matcher.spans(data, 0, len(data))]


def register(api: Api, logs: LogbusService, *, heartbeat_s: float = 15.0) -> None:
    @api.route(
        "GET",
        "/api/logs",
        summary="Search logs: by services, time range, stream, keyword, regex; paged",
        tag="logs",
        query={
            "service": "comma-separated services (default: all)",
            "from": "start, inclusive: epoch seconds, ISO 8601 or a duration ago like 10m",
            "since": "same as from",
            "to": "end, exclusive (same forms)",
            **_FILTERS,
            "limit": f"at most this many lines (default 500, at most {MAX_LIMIT})",
            "tail": "1: the last `limit` matching lines instead of the first",
            "cursor": "next_cursor of the previous page",
        },
    )
    async def search(req: ApiRequest) -> dict[str, Any]:
        names = [n for v in req.query.getall("service", []) for n in v.split(",") if n]
        services = [_service(n) for n in names] or [s["service"] for s in await logs.services()]
        from_ts, to_ts = _time(req, "from", "since"), _time(req, "to", "until")
        await _matcher(req)  # validate the filters before any work
        if not services:
            return {"lines": [], "next_cursor": None, "services": []}
        q = Query(
            tuple(dict.fromkeys(services)),
            from_ts,
            to_ts,
            _streams(req),
            req.query.get("q") or None,
            req.query.get("regex") or None,
            parse_int(req.query.get("limit"), "limit", 500, 1, MAX_LIMIT),
            _cursor(req.query.get("cursor")),
            tail=req.query.get("tail") in ("1", "true", "yes"),
            max_scan_bytes=SCAN_BUDGET_BYTES,
            max_result_bytes=MAX_RESULT_BYTES,
        )
        res = await logs.query(q)
        return {
            "lines": res.lines,
            "next_cursor": res.next_cursor,
            "services": list(q.services),
            "scanned_bytes": res.scanned_bytes,
            "partial": bool(res.stopped_at),
        }

    @api.route(
        "GET", "/api/logs/services", summary="Services with stored logs: files, bytes, lines, time span", tag="logs"
    )
    async def services(req: ApiRequest) -> list[dict[str, Any]]:
        return await logs.services()

    @api.route(
        "GET", "/api/logs/status", summary="Logbus health: pumps, buffered bytes, drops, write errors", tag="logs"
    )
    async def status(req: ApiRequest) -> dict[str, Any]:
        return logs.stats()

    @api.route(
        "GET",
        "/api/logs/download",
        summary="Download one service's stored lines in a time window",
        tag="logs",
        response="text/plain",
        query={"service": "the service", "from": "start (as for search)", "to": "end, exclusive"},
    )
    async def download(req: ApiRequest) -> web.StreamResponse:
        name = req.query.get("service")
        if not name:
            raise BadRequest(
                "service is required", details={"field": "service"}, hint="e.g. /api/logs/download?service=web&from=1h"
            )
        service = _service(name)
        from_ts, to_ts = _time(req, "from", "since"), _time(req, "to", "until")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(from_ts or 0))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{service}-{stamp}.log"',
            }
        )
        await resp.prepare(req.raw)
        async for piece in logs.download(service, from_ts, to_ts):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    @api.route(
        "POST",
        "/api/logs/{service}",
        summary="Append lines (the request body) to a service's log",
        role="admin",
        action="logs.ingest",
        tag="logs",
        query={"stream": "stdout (default) or stderr", "instance": "instance name (default: api)"},
    )
    async def ingest(req: ApiRequest) -> dict[str, Any]:
        service = _service(req.match["service"])
        stream = req.query.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise BadRequest(f"stream must be stdout or stderr, not {stream!r}", details={"field": "stream"})
        instance = req.query.get("instance") or "api"
        data = await req.raw.read()
        if not data:
            raise BadRequest("the body is empty; send the lines to append", hint="e.g. curl --data-binary @file")
        if not data.endswith(b"\n"):
            data += b"\n"
        logs.append(service, instance, stream, data)
        result = {"service": service, "bytes": len(data), "lines": data.count(b"\n")}
        req.audit(f"logs:{service}", after=result)
        return result

    @api.route(
        "GET",
        "/api/logs/{service}/stream",
        summary="Live tail over Server-Sent Events",
        tag="logs",
        response="text/event-stream",
        query={
            "since": "first send the lines from this time (as for search)",
            "tail": "first send the last N lines",
            **_FILTERS,
        },
    )
    async def stream(req: ApiRequest) -> web.StreamResponse:
        service = _service(req.match["service"])
        matcher = await _matcher(req)
        resume = _cursor(req.raw.headers.get("Last-Event-ID") or req.query.get("cursor"))
        if resume is not None and service not in resume:
            resume = None  # an id from another service's stream says nothing about this one
        since = _time(req, "since", "from")
        tail = parse_int(req.query.get("tail"), "tail", 0, 0, MAX_LIMIT)
        sub = logs.subscribe(service)
        try:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await resp.prepare(req.raw)
            await resp.write(b"retry: 2000\n: connected\n\n")
            high_water = (0, 0)
            if resume or since is not None or tail:
                q = Query(
                    (service,),
                    since,
                    None,
                    _streams(req),
                    req.query.get("q") or None,
                    req.query.get("regex") or None,
                    tail or SSE_HISTORY_LIMIT,
                    resume,
                    tail=bool(tail),
                    max_scan_bytes=SCAN_BUDGET_BYTES,
                )
                res = await logs.query(q)
                high_water = res.end.get(service, (0, 0))
                if res.lines:
                    await _send(resp, "lines", res.lines, encode_cursor({service: high_water}))
                if res.next_cursor or (res.stopped_at and not tail):
                    await _send(
                        resp,
                        "skipped",
                        {"lines": None, "text": "history is longer than this stream sends; search for the rest"},
                    )
            quiet_since = time.monotonic()
            while not sub.closed and not api.stopping.is_set() and not _client_gone(req.raw):
                items = await sub.get(_POLL_S)
                if not items:
                    if time.monotonic() - quiet_since >= heartbeat_s:
                        await resp.write(b": ping\n\n")
                        quiet_since = time.monotonic()
                    continue
                quiet_since = time.monotonic()
                for item in items:
                    if isinstance(item, Batch):
                        if (item.file_id, item.start) < high_water:
                            continue  # already sent as history
                        lines = (
                            _matching(matcher, item.data, service)
                            if matcher.everything
                            else await asyncio.to_thread(_matching, matcher, item.data, service)
                        )
                        if lines:
                            await _send(resp, "lines", lines, encode_cursor({service: (item.file_id, item.end)}))
                    else:
                        await _send(
                            resp,
                            "skipped",
                            {
                                "lines": item.lines,
                                "text": f"skipped {item.lines} lines: this client fell behind the live stream",
                            },
                        )
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            sub.close()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp


def _client_gone(request: web.Request) -> bool:
    """Whether the client left (checked while the stream is quiet, between heartbeats)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _send(resp: web.StreamResponse, event: str, data: Any, event_id: str | None = None) -> None:
    head = f"id: {event_id}\n" if event_id else ""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    await resp.write(f"{head}event: {event}\ndata: {payload}\n\n".encode())
