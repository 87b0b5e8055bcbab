"""CLI commands of the gate: `fsctl route add|edit|ls|rm|show`."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from core import yamlsafe
from core.units import parse_size
from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json, table, when


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token))


def _ref(ref: str) -> str:
    return urllib.parse.quote(ref.strip(), safe="")


def _rate(text: str) -> dict[str, Any]:
    """`10/s` or `10/s:20` (rate per second, optional burst)."""
    rate, _, burst = text.partition(":")
    rate = rate.removesuffix("/s")
    try:
        out: dict[str, Any] = {"rate_per_s": float(rate)}
        if burst:
            out["burst"] = int(burst)
    except ValueError:
        raise CliError(f"--rate-limit {text!r} is not like 10/s or 10/s:20 (rate per second, optional burst)") from None
    return out


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = yamlsafe.load(Path(path).read_text())
    except OSError as e:
        raise CliError(f"cannot read route file {path}: {e.strerror or e}") from e
    except yamlsafe.YamlRefused as e:
        raise CliError(f"{path}:{e.line or 1}: {e.problem}") from e
    if not isinstance(data, dict):
        raise CliError(f"{path}: a route file is a mapping of route fields")
    return data


def _size(flag: str, text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise CliError(f"{flag}: {e}") from e


def route_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The route fields the flags give (a flag not given: absent; a `--no-...` flag: null, the field's
    default). `route add` sends them as a new spec, `route edit` as a merge patch."""
    spec: dict[str, Any] = {}
    pol: dict[str, Any] = {}
    for key, value in (
        ("host", args.host),
        ("path", args.path),
        ("tls", args.tls),
        ("balance", args.balance),
        ("strip_prefix", args.strip),
        ("static_dir", args.static_dir),
        ("static_dotfiles", args.static_dotfiles),
    ):
        if value is not None:
            spec[key] = value
    if args.upstream:
        spec["upstreams"] = [u.strip() for item in args.upstream for u in item.split(",") if u.strip()]
    if args.methods:
        spec["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.max_body:
        spec["max_body_bytes"] = _size("--max-body", args.max_body)
    if args.request_buffer:
        spec["request_buffer_bytes"] = _size("--request-buffer", args.request_buffer)
    for key, value in (
        ("redirect_https", args.redirect_https),
        ("hsts_max_age_s", args.hsts),
        ("security_headers", args.security_headers),
        ("allow", args.allow),
        ("deny", args.deny),
    ):
        if value is not None:
            pol[key] = value
    if args.rate_limit:
        pol["rate_limit"] = _rate(args.rate_limit)
    if args.basic_auth:
        users = []
        for item in args.basic_auth:
            user, sep, hashed = item.partition(":")
            if not sep:
                raise CliError(f"--basic-auth {item!r} is not USER:BCRYPT_HASH")
            users.append({"username": user, "bcrypt_hash": hashed})
        pol["basic_auth"] = users
    for flag, (where, key) in _CLEARS.items():
        if getattr(args, flag, False):
            (pol if where == "policies" else spec)[key] = None
    if pol:
        spec["policies"] = pol
    return spec


# `route edit`'s clearing flags: dest → (where, field) set to null (its default).
_CLEARS = {
    "no_hsts": ("policies", "hsts_max_age_s"),
    "no_rate_limit": ("policies", "rate_limit"),
    "no_allow": ("policies", "allow"),
    "no_deny": ("policies", "deny"),
    "no_basic_auth": ("policies", "basic_auth"),
    "all_methods": ("spec", "methods"),
    "default_max_body": ("spec", "max_body_bytes"),
    "default_request_buffer": ("spec", "request_buffer_bytes"),
}


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        return _read_file(args.file)
    if not args.host or not (args.upstream or args.static_dir):
        raise CliError("a route needs --host and --upstream (or --static-dir), or -f FILE")
    return route_fields(args)


def _warn(data: dict[str, Any]) -> None:
    for w in data.get("warnings") or ():
        print(f"warning: {w}", file=sys.stderr)


def _row(r: dict[str, Any]) -> dict[str, Any]:
    target = ", ".join(r["upstreams"]) if r["upstreams"] else f"static:{r.get('static_dir')}"
    redirects = r["tls"] != "off" and r["policies"]["redirect_https"]
    flags = [
        f
        for f, on in (
            ("strip", r["strip_prefix"]),
            ("https", redirects),
            ("hsts", r["policies"]["hsts_max_age_s"] > 0),
            ("auth", bool(r["policies"]["basic_auth"])),
            ("ratelimit", r["policies"]["rate_limit"]),
        )
        if on
    ]
    cert = r.get("certificate") or {}
    served = "-"
    if r["tls"] != "off" and cert:
        served = cert.get("issuer") or cert.get("source") or "-"
        if cert.get("not_after"):
            served += f" until {when(cert['not_after'])}"
    return {**r, "target": target, "flags": ",".join(flags) or "-", "cert": served}


def cmd_add(args: argparse.Namespace) -> int:
    data = _client(args).request("POST", "/api/routes", build_spec(args))
    emit_json(data) if args.json else print(
        f"added route {data['id']}: {data['name']} -> {', '.join(data['upstreams']) or data.get('static_dir')}"
    )
    _warn(data)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.file:
        if _given(args):
            raise CliError("give either -f FILE (the whole route) or flags (the fields to change), not both")
        change: dict[str, Any] = _read_file(args.file)
    else:
        change = route_fields(args)
        if not change:
            raise CliError(
                "nothing to change: give the flags to change, e.g. --hsts 31536000 or --no-redirect-https",
                hint="see `fsctl route edit --help`",
            )
        # Switching between proxying and serving files: the other kind's fields go back to their defaults.
        if "upstreams" in change and "static_dir" not in change:
            change.update(static_dir=None, static_spa=None, static_dotfiles=None)
        elif change.get("static_dir") and "upstreams" not in change:
            change["upstreams"] = None
    before = client.request("GET", f"/api/routes/{_ref(args.ref)}")  # an id, or host[/path] as `ls` shows
    method = "PUT" if args.file else "PATCH"
    data = client.request(method, f"/api/routes/{before['id']}", change)
    if args.json:
        emit_json(data)
    else:
        diff = _changed(before, data)
        print(f"updated route {data['id']}: {data['name']}" + (f" ({'; '.join(diff)})" if diff else " (unchanged)"))
    _warn(data)
    return 0


def _given(args: argparse.Namespace) -> bool:
    skip = {"file", "ref", "func", "json", "server", "token", "command", "sub"}
    return any(v not in (None, False, []) for k, v in vars(args).items() if k not in skip)


def _changed(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """`field old → new` for each field that differs (inside `policies` too); hashes never shown."""
    out = []
    for key, new in after.items():
        if key in ("warnings", "certificate", "id", "name"):
            continue
        old = before.get(key)
        if isinstance(new, dict) and isinstance(old, dict) and key == "policies":
            out += _changed(old, new, "policies.")
        elif old != new:
            shown = "[changed]" if key == "basic_auth" else f"{_short(old)} → {_short(new)}"
            out.append(f"{prefix}{key} {shown}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/routes")
    if args.json:
        emit_json(data)
        return 0
    table(
        [_row(r) for r in data],
        [
            ("id", "ID"),
            ("host", "HOST"),
            ("path", "PATH"),
            ("target", "UPSTREAMS"),
            ("tls", "TLS"),
            ("cert", "CERTIFICATE"),
            ("balance", "BALANCE"),
            ("flags", "FLAGS"),
        ],
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = _client(args)
    data = client.request("GET", f"/api/routes/{_ref(args.ref)}")
    if args.json:
        emit_json(data)
        return 0
    print(yaml.safe_dump(data, sort_keys=False).rstrip())
    metrics = client.request("GET", "/api/gate/metrics")
    m = metrics["routes"].get(data["name"])
    if m:
        lat = m["latency_ms"]
        print(
            f"\ntraffic (last {int(metrics['window_s'])} s latency): {m['requests']} requests, "
            f"{m['status']['2xx']} 2xx, {m['status']['4xx']} 4xx, {m['status']['5xx']} 5xx, "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, {m['active']} active"
        )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/routes/{_ref(args.ref)}")
    emit_json(data) if args.json else print(f"removed route {data['id']}: {data['name']}")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    rt = sub.add_parser("route", help="edge routes (host/path -> upstreams)").add_subparsers(
        dest="sub", required=True, metavar="COMMAND"
    )
    p = rt.add_parser(
        "add",
        parents=[common],
        help="add a route (applies at once, no restart)",
        description="Add a route. With --tls auto or manual, plain HTTP is redirected to HTTPS "
        "unless --no-redirect-https; HSTS is opt-in (--hsts). Upstreams that name an unknown "
        "service or a host that does not resolve are kept, with a warning.",
    )
    _route_flags(p, edit=False)
    p.set_defaults(func=cmd_add)
    p = rt.add_parser(
        "edit",
        parents=[common],
        help="change some of a route's fields (the others stay)",
        description="Change a route in place: only the flags given change (applies at once). "
        "--no-... flags put a field back to its default; -f FILE replaces the whole route.",
    )
    p.add_argument("ref", help="route id, or host[/path] as `fsctl route ls` shows")
    _route_flags(p, edit=True)
    p.set_defaults(func=cmd_edit)
    p = rt.add_parser("ls", parents=[common], help="list routes")
    p.set_defaults(func=cmd_ls)
    p = rt.add_parser("show", parents=[common], help="a route's full spec and recent traffic")
    p.add_argument("ref", help="route id, or host[/path]")
    p.set_defaults(func=cmd_show)
    p = rt.add_parser("rm", parents=[common], help="remove a route")
    p.add_argument("ref", help="route id, or host[/path]")
    p.set_defaults(func=cmd_rm)


def _route_flags(p: argparse.ArgumentParser, *, edit: bool) -> None:
    """The route flags of `add` and `edit`; every default is None (not given), so `edit` changes only what
    it is told and `add` leaves the rest to the route model's defaults."""
    bool_flag = argparse.BooleanOptionalAction
    p.add_argument("--host", help="exact name, *.example.com, or * for any host")
    p.add_argument(
        "--upstream",
        action="append",
        help="host:port or service:NAME (repeat, or comma-separate)" + ("; replaces the list" if edit else ""),
    )
    p.add_argument("--path", help="path prefix (default /)")
    p.add_argument("--strip", action=bool_flag, help="strip the path prefix before proxying")
    p.add_argument("--tls", choices=["auto", "off", "manual"], help="certificate mode (default off)")
    p.add_argument("--balance", choices=["round_robin", "least_conn"], help="default round_robin")
    p.add_argument("--methods", help="allowed methods, e.g. GET,POST")
    p.add_argument("--max-body", help="request body limit, e.g. 10M (default: the gate's)")
    p.add_argument(
        "--request-buffer",
        help="bodies up to this size are received whole before the upstream is "
        "contacted, e.g. 1Mi; 0 streams at once (default: the gate's, 64Ki)",
    )
    p.add_argument("--static-dir", help="serve files from this directory instead of upstreams")
    p.add_argument(
        "--static-dotfiles",
        choices=["deny", "allow"],
        help="serve files whose name starts with '.' (default deny: 404; .well-known/ always served)",
    )
    p.add_argument(
        "--redirect-https",
        action=bool_flag,
        help="with --tls auto/manual, plain HTTP gets 301/308 to HTTPS (default: on; "
        "/.well-known/acme-challenge/ is never redirected)",
    )
    hsts = p.add_mutually_exclusive_group()
    hsts.add_argument(
        "--hsts",
        type=int,
        metavar="SECONDS",
        help="send Strict-Transport-Security max-age over HTTPS (opt-in, e.g. 31536000 = 1 year: "
        "browsers then refuse plain HTTP to the host that long)",
    )
    p.add_argument("--security-headers", action=bool_flag, help="add the default security headers")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--rate-limit", metavar="N/s[:BURST]", help="per client IP, e.g. 10/s:20")
    allow = p.add_mutually_exclusive_group()
    allow.add_argument("--allow", action="append", metavar="CIDR", help="only these addresses (repeat)")
    deny = p.add_mutually_exclusive_group()
    deny.add_argument("--deny", action="append", metavar="CIDR", help="never these addresses (repeat)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--basic-auth", action="append", metavar="USER:BCRYPT_HASH", help="require a login (repeat)")
    if edit:
        hsts.add_argument("--no-hsts", action="store_true", help="stop sending Strict-Transport-Security")
        rate.add_argument("--no-rate-limit", action="store_true", help="remove the rate limit")
        allow.add_argument("--no-allow", action="store_true", help="remove the allow list (everyone)")
        deny.add_argument("--no-deny", action="store_true", help="remove the deny list")
        auth.add_argument("--no-basic-auth", action="store_true", help="remove the login")
        p.add_argument("--all-methods", action="store_true", help="allow every method again")
        p.add_argument("--default-max-body", action="store_true", help="back to the gate's body limit")
        p.add_argument("--default-request-buffer", action="store_true", help="back to the gate's request buffer")
    p.add_argument("-f", "--file", help="the whole route as a YAML/JSON file instead of flags")
