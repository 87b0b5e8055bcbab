"""CLI commands of the gate: `fsctl route add|ls|rm|show`."""

from __future__ import annotations

import argparse
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


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        try:
            data = yamlsafe.load(Path(args.file).read_text())
        except OSError as e:
            raise CliError(f"cannot read route file {args.file}: {e.strerror or e}") from e
        except yamlsafe.YamlRefused as e:
            raise CliError(f"{args.file}:{e.line or 1}: {e.problem}") from e
        if not isinstance(data, dict):
            raise CliError(f"{args.file}: a route file is a mapping of route fields")
        return data
    if not args.host or not (args.upstream or args.static_dir):
        raise CliError("a route needs --host and --upstream (or --static-dir), or -f FILE")
    upstreams = [u.strip() for item in args.upstream or [] for u in item.split(",") if u.strip()]
    spec: dict[str, Any] = {"host": args.host, "path": args.path, "upstreams": upstreams,
                            "strip_prefix": args.strip, "tls": args.tls, "balance": args.balance}
    if args.static_dir:
        spec["static_dir"] = args.static_dir
    if args.static_dotfiles:
        spec["static_dotfiles"] = args.static_dotfiles
    if args.methods:
        spec["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.max_body:
        try:
            spec["max_body_bytes"] = parse_size(args.max_body)
        except ValueError as e:
            raise CliError(f"--max-body: {e}") from e
    if args.request_buffer:
        try:
            spec["request_buffer_bytes"] = parse_size(args.request_buffer)
        except ValueError as e:
            raise CliError(f"--request-buffer: {e}") from e
    pol: dict[str, Any] = {}
    if args.redirect_https:
        pol["redirect_https"] = True
    if args.hsts is not None:
        pol["hsts_max_age_s"] = args.hsts
    if args.security_headers:
        pol["security_headers"] = True
    if args.rate_limit:
        pol["rate_limit"] = _rate(args.rate_limit)
    if args.allow:
        pol["allow"] = args.allow
    if args.deny:
        pol["deny"] = args.deny
    if args.basic_auth:
        users = []
        for item in args.basic_auth:
            user, sep, hashed = item.partition(":")
            if not sep:
                raise CliError(f"--basic-auth {item!r} is not USER:BCRYPT_HASH")
            users.append({"username": user, "bcrypt_hash": hashed})
        pol["basic_auth"] = users
    if pol:
        spec["policies"] = pol
    return spec


def _row(r: dict[str, Any]) -> dict[str, Any]:
    target = ", ".join(r["upstreams"]) if r["upstreams"] else f"static:{r.get('static_dir')}"
    flags = [f for f, on in (("strip", r["strip_prefix"]), ("https", r["policies"]["redirect_https"]),
                             ("auth", bool(r["policies"]["basic_auth"])), ("ratelimit", r["policies"]["rate_limit"]))
             if on]
    cert = r.get("certificate") or {}
    served = "-"
    if r["tls"] != "off" and cert:
        served = cert.get("issuer") or cert.get("source") or "-"
        if cert.get("not_after"):
            served += f" until {when(cert['not_after'])}"
    return {**r, "target": target, "flags": ",".join(flags) or "-", "cert": served}


def cmd_add(args: argparse.Namespace) -> int:
    data = _client(args).request("POST", "/api/routes", build_spec(args))
    emit_json(data) if args.json else print(f"added route {data['id']}: {data['name']} -> "
                                            f"{', '.join(data['upstreams']) or data.get('static_dir')}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/routes")
    if args.json:
        emit_json(data)
        return 0
    table([_row(r) for r in data], [("id", "ID"), ("host", "HOST"), ("path", "PATH"), ("target", "UPSTREAMS"),
                                    ("tls", "TLS"), ("cert", "CERTIFICATE"), ("balance", "BALANCE"),
                                    ("flags", "FLAGS")])
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
        print(f"\ntraffic (last {int(metrics['window_s'])} s latency): {m['requests']} requests, "
              f"{m['status']['2xx']} 2xx, {m['status']['4xx']} 4xx, {m['status']['5xx']} 5xx, "
              f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, {m['active']} active")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/routes/{_ref(args.ref)}")
    emit_json(data) if args.json else print(f"removed route {data['id']}: {data['name']}")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    rt = sub.add_parser("route", help="edge routes (host/path -> upstreams)").add_subparsers(
        dest="sub", required=True, metavar="COMMAND")
    p = rt.add_parser("add", parents=[common], help="add a route (applies at once, no restart)")
    p.add_argument("--host", help="exact name, *.example.com, or * for any host")
    p.add_argument("--upstream", action="append", help="host:port or service:NAME (repeat, or comma-separate)")
    p.add_argument("--path", default="/", help="path prefix (default /)")
    p.add_argument("--strip", action="store_true", help="strip the path prefix before proxying")
    p.add_argument("--tls", choices=["auto", "off", "manual"], default="off", help="certificate mode (default off)")
    p.add_argument("--balance", choices=["round_robin", "least_conn"], default="round_robin")
    p.add_argument("--methods", help="allowed methods, e.g. GET,POST")
    p.add_argument("--max-body", help="request body limit, e.g. 10M (default: the gate's)")
    p.add_argument("--request-buffer", help="bodies up to this size are received whole before the upstream is "
                   "contacted, e.g. 1Mi; 0 streams at once (default: the gate's, 64Ki)")
    p.add_argument("--static-dir", help="serve files from this directory instead of upstreams")
    p.add_argument("--static-dotfiles", choices=["deny", "allow"],
                   help="serve files whose name starts with '.' (default deny: 404; .well-known/ always served)")
    p.add_argument("--redirect-https", action="store_true", help="redirect plain HTTP to HTTPS")
    p.add_argument("--hsts", type=int, metavar="SECONDS", help="Strict-Transport-Security max-age")
    p.add_argument("--security-headers", action="store_true", help="add the default security headers")
    p.add_argument("--rate-limit", metavar="N/s[:BURST]", help="per client IP, e.g. 10/s:20")
    p.add_argument("--allow", action="append", metavar="CIDR", help="only these addresses (repeat)")
    p.add_argument("--deny", action="append", metavar="CIDR", help="never these addresses (repeat)")
    p.add_argument("--basic-auth", action="append", metavar="USER:BCRYPT_HASH", help="require a login (repeat)")
    p.add_argument("-f", "--file", help="the whole route as a YAML/JSON file instead of flags")
    p.set_defaults(func=cmd_add)
    p = rt.add_parser("ls", parents=[common], help="list routes")
    p.set_defaults(func=cmd_ls)
    p = rt.add_parser("show", parents=[common], help="a route's full spec and recent traffic")
    p.add_argument("ref", help="route id, or host[/path]")
    p.set_defaults(func=cmd_show)
    p = rt.add_parser("rm", parents=[common], help="remove a route")
    p.add_argument("ref", help="route id, or host[/path]")
    p.set_defaults(func=cmd_rm)
