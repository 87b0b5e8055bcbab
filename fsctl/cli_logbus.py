"""CLI commands of logbus: `fsctl logs NAME...` and the same as `fsctl service logs NAME...` — search
and print a service's logs, or follow them live (`-f`, over the SSE tail)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from fsctl.client import Client, CliError, _api_error, resolve


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token))


def _params(args: argparse.Namespace) -> dict[str, str]:
    p: dict[str, str] = {}
    if args.since:
        p["since"] = args.since
    if args.until:
        p["to"] = args.until
    if args.grep:
        p["q"] = args.grep
    if args.regex:
        p["regex"] = args.regex
    if args.stream:
        p["stream"] = args.stream
    return p


# Control characters a service wrote (escape sequences, carriage returns) are shown, not obeyed: a log
# line must not be able to move the cursor, retitle or recolour the reader's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _print(line: dict[str, Any], args: argparse.Namespace, multi: bool) -> None:
    if args.json:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    who = f"{line['service']}/{line['instance']}" if multi else line["instance"]
    mark = {"stderr": " !", "logbus": " *"}.get(line["stream"], "")
    cont = " ↩" if line.get("continued") else ""
    sys.stdout.write(f"{line['ts']} {_visible(who)}{mark} {_visible(line['text'])}{cont}\n")


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args)
    names: list[str] = args.name
    if args.follow:
        if len(names) != 1:
            raise CliError("-f follows one service at a time", hint="run one `fsctl logs NAME -f` per service")
        return _follow(client, names[0], args)
    params = {"service": ",".join(names), **_params(args)}
    multi = len(names) > 1
    if not args.since:  # the most recent lines, like tail
        data = client.request("GET", "/api/logs?" + urlencode({**params, "tail": "1", "limit": str(args.tail)}))
        for line in data["lines"]:
            _print(line, args, multi)
        return 0
    printed = 0
    cursor: str | None = None
    while True:
        page = {**params, "limit": str(min(1000, args.limit - printed))}
        if cursor:
            page["cursor"] = cursor
        data = client.request("GET", "/api/logs?" + urlencode(page))
        for line in data["lines"]:
            _print(line, args, multi)
        printed += len(data["lines"])
        cursor = data.get("next_cursor")
        if not cursor or printed >= args.limit:
            if cursor and not args.json:
                print(f"(stopped at --limit {args.limit}; narrow the time range or raise --limit)", file=sys.stderr)
            return 0


def _follow(client: Client, name: str, args: argparse.Namespace) -> int:
    params = _params(args)
    params.pop("to", None)
    if "since" not in params:
        params["tail"] = str(args.tail)
    last: str | None = None
    while True:
        try:
            for event, data, event_id in _sse(client, f"/api/logs/{quote(name)}/stream?" + urlencode(params), last):
                last = event_id or last
                if event == "lines":
                    for line in data:
                        _print(line, args, False)
                elif event == "skipped":
                    print(f"-- {data.get('text')}", file=sys.stderr)
                sys.stdout.flush()
        except CliError as e:
            if e.status is not None:
                raise
        except KeyboardInterrupt:
            return 0
        time.sleep(1)  # the server went away: resume after the last position we saw


def _sse(client: Client, path: str, last_id: str | None) -> Iterator[tuple[str, Any, str | None]]:
    """(event, data, id) from a logbus SSE stream, until the server closes it."""
    headers = {"Accept": "text/event-stream"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    resp = client._send("GET", path, headers=headers, timeout=None)
    if resp.status >= 400:
        raw = resp.read()
        raise _api_error(resp.status, json.loads(raw) if raw else None, bool(client.target.token))
    event, data, event_id = "message", "", None
    while True:
        raw_line = resp.readline()
        if not raw_line:
            return
        text = raw_line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                yield event, json.loads(data), event_id
            event, data, event_id = "message", "", None
        elif text.startswith(":"):
            continue
        else:
            key, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                event = value
            elif key == "data":
                data += value
            elif key == "id":
                event_id = value


def _add_logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="+", help="service name(s); gate-access holds the gate's access log")
    p.add_argument("--since", help="from this time: 10m, 2h, 2026-11-23T08:00:00Z or epoch seconds")
    p.add_argument("--until", help="up to this time (exclusive), same forms")
    p.add_argument("--grep", metavar="X", help="only lines containing X (case-insensitive)")
    p.add_argument(
        "--regex",
        metavar="R",
        help="only lines matching the regular expression R (RE2 syntax: no backreferences or lookaround)",
    )
    p.add_argument("--stream", choices=["stdout", "stderr"], help="only this stream")
    p.add_argument("--tail", type=int, default=100, help="without --since: the last N lines (default 100)")
    p.add_argument("--limit", type=int, default=10_000, help="with --since: stop after N lines (default 10000)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they come")
    p.set_defaults(func=cmd_logs)


def add_service_logs_command(service_subparsers: Any, common: argparse.ArgumentParser) -> None:
    """`fsctl service logs NAME ...`: for orch's `service` command group."""
    p = service_subparsers.add_parser("logs", parents=[common], help="a service's logs (search, -f to follow)")
    _add_logs_arguments(p)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("logs", parents=[common], help="service logs: search by time, keyword, regex; -f to follow")
    _add_logs_arguments(p)
