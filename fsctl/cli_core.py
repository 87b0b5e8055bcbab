"""CLI commands of the kernel: login, logout, status, token, user, audit, events."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any
from urllib.parse import urlencode

from core.units import parse_duration
from fsctl.client import Client, CliError, config_path, load_config, resolve, save_config
from fsctl.output import emit_json, table, when


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token))


def _read_password(args: argparse.Namespace, prompt: str, *, confirm: bool = False) -> str:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on standard input")
        return line
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for a password", hint="pass --password-stdin and pipe it in")
    pw = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != pw:
        raise CliError("the two passwords differ")
    return pw


def cmd_login(args: argparse.Namespace) -> int:
    target = resolve(args.server, None)
    target.token = None
    if not args.user and not sys.stdin.isatty():
        raise CliError("no username: no terminal to ask for it", hint="pass --user NAME (and --password-stdin)")
    user = args.user or input("username: ").strip()
    password = _read_password(args, f"password for {user}: ")
    body = {"username": user, "password": password}
    if args.otp:
        body["otp"] = args.otp
    try:
        data = Client(target).request("POST", "/api/auth/login", body)
    except CliError as e:
        if e.code != "otp_required" or not sys.stdin.isatty():
            raise
        body["otp"] = input("two-factor code (or a recovery code): ").strip()
        data = Client(target).request("POST", "/api/auth/login", body)
    path = save_config(
        {
            "server": target.server,
            "token": data["token"],
            "username": data["username"],
            "expires_at": data["expires_at"],
        }
    )
    if args.json:
        emit_json({k: v for k, v in data.items() if k != "token"} | {"server": target.server, "saved_to": str(path)})
    else:
        print(
            f"logged in to {target.server} as {data['username']} ({data['role']}); "
            f"session until {when(data['expires_at'])}; saved in {path}"
        )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    cfg = load_config()
    if cfg.get("token"):
        try:
            _client(args).request("POST", "/api/auth/logout")
        except CliError:
            pass  # the session may already be gone; forget it locally all the same
        cfg.pop("token", None)
        save_config(cfg)
    print(f"logged out (removed the token from {config_path()})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    data = client.request("GET", "/api/status")
    if args.json:
        emit_json(data)
        return 0
    print(f"server      {client.target.server}")
    print(f"version     {data['version']}")
    print(f"uptime      {int(data['uptime_s'])} s")
    print(f"you         {data['you']['username']} ({data['you']['role']})")
    print(f"data dir    {data.get('data_dir', '-')}")
    print()
    table(data.get("components", []), [("name", "COMPONENT"), ("state", "STATE")])
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "expires_in_s": int(_duration(args.expires))}
    data = _client(args).request("POST", "/api/tokens", body)
    if args.json:
        emit_json(data)
    else:
        print(f"token {data['id']} ({data['name']}, {data['role']}), expires {when(data['expires_at'])}:")
        print(data["token"])
        print("(shown once: store it now)", file=sys.stderr)
    return 0


def cmd_token_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/tokens" + ("?sessions=1" if args.all else ""))
    if args.json:
        emit_json(data)
        return 0
    rows = [{**t, "created": when(t["created_at"]), "expires": when(t["expires_at"])} for t in data]
    table(
        rows,
        [
            ("id", "ID"),
            ("kind", "KIND"),
            ("name", "NAME"),
            ("role", "ROLE"),
            ("owner", "OWNER"),
            ("state", "STATE"),
            ("created", "CREATED"),
            ("expires", "EXPIRES"),
        ],
    )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/tokens/{args.id}")
    emit_json(data) if args.json else print(f"revoked token {data['id']} ({data['name']})")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _read_password(args, f"password for {args.name}: ", confirm=True)
    data = _client(args).request("POST", "/api/users", {"username": args.name, "password": password, "role": args.role})
    emit_json(data) if args.json else print(f"added user {data['username']} ({data['role']})")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args, f"new password for {args.name}: ", confirm=True)
    data = _client(args).request("PUT", f"/api/users/{args.name}/password", {"password": password})
    emit_json(data) if args.json else print(f"password changed for {args.name}; their sessions were ended")
    return 0


def cmd_user_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/users")
    if args.json:
        emit_json(data)
        return 0
    rows = [{**u, "created": when(u["created_at"]), "totp": "on" if u["totp"] else "off"} for u in data]
    table(rows, [("username", "USER"), ("role", "ROLE"), ("totp", "2FA"), ("created", "CREATED")])
    return 0


def cmd_user_rm(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/users/{args.name}")
    emit_json(data) if args.json else print(f"removed user {data['username']}")
    return 0


def cmd_user_totp_enable(args: argparse.Namespace) -> int:
    client = _client(args)
    finish = f"`fsctl user totp enable {args.name} --code CODE`"
    if args.code:
        # The second step of a non-interactive enrolment: confirm the secret the first step printed.
        try:
            data = client.request("POST", f"/api/users/{args.name}/totp/confirm", {"code": args.code.strip()})
        except CliError as e:
            if e.code == "conflict":
                e.hint = (
                    f"start one with `fsctl user totp enable {args.name}` (it prints the secret), then run {finish}"
                )
            raise
    else:
        data = client.request("POST", f"/api/users/{args.name}/totp")
        print("Add this account to your authenticator app (scan the URI as a QR code, or type the secret):")
        print(f"  {data['otpauth_uri']}")
        print(f"  secret: {data['secret']}", flush=True)
        code = _read_code(
            f"the enrolment of {args.name} is pending: finish it with {finish} "
            "(a current code from the app), or pipe the code into this command"
        )
        data = client.request("POST", f"/api/users/{args.name}/totp/confirm", {"code": code})
    print(f"two-factor login is on for {args.name}")
    _print_recovery_codes(data["recovery_codes"])
    return 0


def _read_code(hint: str) -> str:
    """The app's code: asked for on a terminal, else one line of standard input (a script that read the
    secret above and computed it); no terminal and nothing piped in is a clear error, not an EOFError."""
    if sys.stdin.isatty():
        try:
            code = input("code shown by the app: ").strip()
        except EOFError:
            code = ""
    else:
        code = sys.stdin.readline().strip()
    if not code:
        raise CliError("no two-factor code: no terminal to ask for it and none on standard input", hint=hint)
    return code


def _print_recovery_codes(codes: list[str]) -> None:
    print("Recovery codes (each works once in place of a code, e.g. when the phone is lost; they are")
    print("shown only now — store them somewhere safe):")
    for code in codes:
        print(f"  {code}")


def cmd_user_totp_recovery_codes(args: argparse.Namespace) -> int:
    data = _client(args).request("POST", f"/api/users/{args.name}/totp/recovery-codes")
    if args.json:
        emit_json(data)
        return 0
    print(f"new recovery codes for {args.name}; the old ones no longer work")
    _print_recovery_codes(data["recovery_codes"])
    return 0


def cmd_user_totp_disable(args: argparse.Namespace) -> int:
    _client(args).request("DELETE", f"/api/users/{args.name}/totp")
    print(f"two-factor login is off for {args.name}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    q = (
        f"?limit={args.limit}"
        + (f"&actor={args.actor}" if args.actor else "")
        + (f"&action={args.action}" if args.action else "")
    )
    data = _client(args).request("GET", "/api/audit" + q)
    if args.json:
        emit_json(data)
        return 0
    rows = [{**a, "when": when(a["at"])} for a in data]
    table(
        rows,
        [
            ("id", "ID"),
            ("when", "WHEN"),
            ("actor", "ACTOR"),
            ("action", "ACTION"),
            ("target", "TARGET"),
            ("outcome", "OUTCOME"),
            ("client_ip", "FROM"),
        ],
    )
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    client = _client(args)
    last: int | None = args.since
    query = {"types": args.types} if args.types else {}
    if args.no_follow:
        # The server ends the stream after the events there are now (without --since: the newest --last).
        query |= {"follow": "0"} if args.since is not None else {"follow": "0", "last": str(args.last)}
    path = "/api/events" + (f"?{urlencode(query)}" if query else "")
    while True:
        try:
            for ev in client.events(path, last):
                last = ev.get("id", last)
                if args.json:
                    emit_json(ev.get("data"))
                else:
                    d = ev.get("data", {})
                    print(f"{ev.get('id')}  {when(d.get('at'))}  {ev.get('type')}  {d.get('data')}", flush=True)
        except CliError as e:
            if e.status is not None or args.no_follow:
                raise
        except KeyboardInterrupt:
            return 0
        if args.no_follow:
            return 0
        time.sleep(1)  # the server went away: resume from `last` when it is back


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise CliError(str(e)) from e


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("login", parents=[common], help="log in and save a session token")
    p.add_argument("--user", "-u")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--otp", metavar="CODE", help="two-factor code (asked for on a terminal when needed)")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", parents=[common], help="end the session and forget the token")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser("status", parents=[common], help="server version, uptime and components")
    p.set_defaults(func=cmd_status)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    p = tok.add_parser("create", parents=[common], help="create an API token (shown once)")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=["admin", "viewer"], default="viewer")
    p.add_argument("--expires", default="90d", help="lifetime like 12h, 30d (default 90d)")
    p.set_defaults(func=cmd_token_create)
    p = tok.add_parser("ls", parents=[common], help="list tokens")
    p.add_argument("--all", action="store_true", help="include login sessions")
    p.set_defaults(func=cmd_token_ls)
    p = tok.add_parser("revoke", parents=[common], help="revoke a token")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_token_revoke)

    usr = sub.add_parser("user", help="users").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    p = usr.add_parser("add", parents=[common], help="add a user")
    p.add_argument("name")
    p.add_argument("--role", choices=["admin", "viewer"], default="viewer")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_user_add)
    p = usr.add_parser("passwd", parents=[common], help="set a user's password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_user_passwd)
    p = usr.add_parser("ls", parents=[common], help="list users")
    p.set_defaults(func=cmd_user_ls)
    totp = usr.add_parser("totp", help="two-factor login (TOTP)").add_subparsers(
        dest="totp", required=True, metavar="COMMAND"
    )
    p = totp.add_parser("enable", parents=[common], help="enrol an authenticator app")
    p.add_argument("name")
    p.add_argument(
        "--code",
        help="finish a pending enrolment with a current code from the app (without it: "
        "a new secret is printed and the code asked for, or read from standard input)",
    )
    p.set_defaults(func=cmd_user_totp_enable)
    p = totp.add_parser("disable", parents=[common], help="turn two-factor login off")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_totp_disable)
    p = totp.add_parser("recovery-codes", parents=[common], help="new recovery codes (the old ones stop working)")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_totp_recovery_codes)
    p = usr.add_parser("rm", parents=[common], help="remove a user")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_rm)

    p = sub.add_parser("audit", parents=[common], help="the audit log, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--actor")
    p.add_argument("--action", help="e.g. token.* or user.add")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("events", parents=[common], help="follow the event stream")
    p.add_argument("--since", type=int, help="start after this event id")
    p.add_argument("--types", help="comma-separated event types")
    p.add_argument(
        "--no-follow",
        action="store_true",
        help="print the events there are now and exit (those after --since, else the newest --last)",
    )
    p.add_argument(
        "--last",
        type=int,
        default=20,
        metavar="N",
        help="with --no-follow and no --since: how many of the newest events (default 20)",
    )
    p.set_defaults(func=cmd_events)
