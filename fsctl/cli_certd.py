"""CLI commands of certd: `fsctl cert ls | issue NAME | renew NAME | import --cert --key | rm NAME`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json, table, when

# Orders wait for the ACME server (validation, finalization): give them longer than the usual 30 s.
ORDER_TIMEOUT_S = 300.0


def _client(args: argparse.Namespace, timeout: float = 30.0) -> Client:
    return Client(resolve(args.server, args.token), timeout=timeout)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CliError(f"{what} file {path} does not exist") from None
    except UnicodeDecodeError:
        raise CliError(
            f"{what} file {path} is not PEM text", hint="convert DER with `openssl x509 -inform der`"
        ) from None
    except OSError as e:
        raise CliError(f"cannot read the {what} file {path}: {e.strerror}") from e


def _print_cert(c: dict[str, Any], verb: str) -> None:
    print(
        f"{verb} {c['name']} ({', '.join(c['names'])}): {c['status']}, serial {c.get('serial') or '-'}, "
        f"issuer {c.get('issuer') or '-'}, expires {when(c.get('not_after'))}"
    )


def _renews(c: dict[str, Any]) -> str:
    """When certd renews it on its own; "(ARI)" when the time comes from the CA's renewal window."""
    at = c.get("renew_at")
    if at is None or not c.get("auto_renew"):
        return "-"
    ari = c.get("ari") or {}
    return when(at) + (" (ARI)" if ari.get("renew_at") is not None and ari["renew_at"] == at else "")


def cmd_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/certs")
    if args.json:
        emit_json(data)
        return 0
    rows = [
        {
            **c,
            "names_s": ",".join(c["names"]),
            "expires": when(c.get("not_after")),
            "left": "-" if c.get("days_left") is None else f"{c['days_left']}d",
            "renews": _renews(c),
            "error": (c.get("last_error") or "")[:60] or None,
        }
        for c in data
    ]
    table(
        rows,
        [
            ("name", "NAME"),
            ("names_s", "NAMES"),
            ("status", "STATUS"),
            ("source", "SOURCE"),
            ("issuer", "ISSUER"),
            ("expires", "EXPIRES"),
            ("left", "LEFT"),
            ("renews", "RENEWS"),
            ("error", "LAST ERROR"),
        ],
    )
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    data = _client(args, ORDER_TIMEOUT_S).request("POST", "/api/certs", {"name": args.name, "also": args.also})
    emit_json(data) if args.json else _print_cert(data, "issued")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    data = _client(args, ORDER_TIMEOUT_S).request("POST", f"/api/certs/{quote(args.name, safe='')}/renew")
    emit_json(data) if args.json else _print_cert(data, "renewed")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    body = {"cert_pem": _read(args.cert, "certificate"), "key_pem": _read(args.key, "key")}
    data = _client(args).request("POST", "/api/certs/import", body)
    emit_json(data) if args.json else _print_cert(data, "imported")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/certs/{quote(args.name, safe='')}")
    emit_json(data) if args.json else print(f"removed certificate {data['name']} ({', '.join(data['names'])})")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cert = sub.add_parser("cert", help="TLS certificates (ACME, imported)").add_subparsers(
        dest="sub", required=True, metavar="COMMAND"
    )
    p = cert.add_parser("ls", parents=[common], help="list certificates with expiry and status")
    p.set_defaults(func=cmd_ls)
    p = cert.add_parser("issue", parents=[common], help="order a certificate now (ACME HTTP-01)")
    p.add_argument("name", help="the certificate's DNS name")
    p.add_argument("--also", action="append", default=[], metavar="NAME", help="another DNS name (repeatable)")
    p.set_defaults(func=cmd_issue)
    p = cert.add_parser("renew", parents=[common], help="renew a certificate now")
    p.add_argument("name")
    p.set_defaults(func=cmd_renew)
    p = cert.add_parser("import", parents=[common], help="import your own certificate and key")
    p.add_argument("--cert", type=Path, required=True, metavar="FULLCHAIN.pem", help="certificate chain, leaf first")
    p.add_argument("--key", type=Path, required=True, metavar="KEY.pem", help="its private key")
    p.set_defaults(func=cmd_import)
    p = cert.add_parser("rm", parents=[common], help="stop serving a certificate and delete it")
    p.add_argument("name")
    p.set_defaults(func=cmd_rm)
