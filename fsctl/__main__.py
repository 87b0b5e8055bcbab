"""The `fsctl` command line: `fsctl serve` and the API client commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from core.errors import StartupError
from fsctl import __version__
from fsctl.client import CliError

# Modules with `add_commands(subparsers, common)`, one per component; missing ones are not built yet.
COMMAND_MODULES: tuple[str, ...] = (
    "fsctl.cli_core",
    "fsctl.cli_gate",
    "fsctl.cli_orch",
    "fsctl.cli_deploy",
    "fsctl.cli_logbus",
    "fsctl.cli_probe",
    "fsctl.cli_certd",
    "fsctl.cli_snap",
    "fsctl.cli_security",
    "fsctl.cli_state",
    "fsctl.cli_doctor",
    "fsctl.cli_install",
)


def _serve(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from fsctl.serve import serve

    try:
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            http_port=args.http_port,
            https_port=args.https_port,
            console=args.console,
            log_level=args.log_level,
            log_format=args.log_format,
            acme_directory=args.acme_directory,
            acme_ca_bundle=args.acme_ca_bundle,
            acme_email=args.acme_email,
        )
    except StartupError as e:
        print(f"fsctl serve: error: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return 1
    return serve(settings)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", help="API address: http://HOST:PORT or unix:PATH (env FSCTL_SERVER)")
    common.add_argument("--token", help="API token (env FSCTL_TOKEN; default: the one `fsctl login` saved)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="fsctl", description="Infra-Core: server and command-line client.")
    parser.add_argument("--version", action="version", version=f"fsctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the platform (edge proxy, control plane and console)")
    p.add_argument("--config", type=Path, help="YAML config file (default /etc/infracore/config.yaml if present)")
    p.add_argument("--data-dir", type=Path, help="state directory (default /var/lib/infracore as root, else ./var)")
    p.add_argument("--http-port", type=int, help="plain HTTP edge port (default 80 as root, else 8080)")
    p.add_argument("--https-port", type=int, help="HTTPS edge port (default 443 as root, else 8443)")
    p.add_argument("--console", metavar="HOST:PORT", help="console API address (default 127.0.0.1:7070)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["auto", "console", "json"])
    p.add_argument("--acme-directory", metavar="URL", help="ACME directory URL (default: Let's Encrypt)")
    p.add_argument("--acme-ca-bundle", type=Path, metavar="FILE", help="CA bundle to trust for the ACME server")
    p.add_argument("--acme-email", metavar="ADDR", help="contact address for the ACME account")
    p.set_defaults(func=_serve)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.add_commands(sub, common)
    return parser


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"fsctl: error: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# What a program killed by SIGPIPE reports to the shell (128 + 13), as `yes | head -1` does.
EXIT_PIPE_CLOSED = 141


def main(argv: list[str] | None = None) -> int:
    # The reader of our output went away (`fsctl ... | head`): stop quietly, like a Unix tool killed by
    # SIGPIPE, instead of a BrokenPipeError traceback. Python's recipe: point stdout at /dev/null so the
    # flush at interpreter exit does not fail again. (SIGPIPE itself stays ignored: a write to a closed
    # API connection must stay an error we report, not a silent death.)
    try:
        try:
            code = _run(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    return code


if __name__ == "__main__":
    sys.exit(main())
