"""`fsctl install-service` / `fsctl uninstall-service`: the platform as the host's own systemd service (the
production setup). Prints what it wrote and how to undo it. `--via CMD` runs every file write and
`systemctl` call through a command prefix (e.g. `ssh host` or `docker exec -i BOX`): a systemd elsewhere."""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fsctl.client import CliError
from fsctl.host_unit import HostUnit, render


def _run(via: list[str], argv: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run([*via, *argv], input=stdin, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise CliError(f"cannot run {' '.join([*via, *argv][:1])}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise CliError(f"`{shlex.join([*via, *argv])}` did not finish within 120 s") from None
    if check and done.returncode != 0:
        raise CliError(
            f"`{shlex.join([*via, *argv])}` failed with {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-500:]}"
        )
    return done.stdout


def _write(via: list[str], path: Path, text: str) -> None:
    """Atomically: a temp file beside it, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    if via:
        _run(
            via,
            [
                "sh",
                "-c",
                f"umask 022 && cat > {shlex.quote(str(tmp))} && mv -f {shlex.quote(str(tmp))} {shlex.quote(str(path))}",
            ],
            stdin=text,
        )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _read(via: list[str], path: Path) -> str | None:
    if via:
        out = subprocess.run([*via, "cat", str(path)], capture_output=True, text=True, timeout=60)
        return out.stdout if out.returncode == 0 else None
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _fsctl_path(given: Path | None) -> Path:
    if given is not None:
        return given
    beside = Path(sys.executable).parent / "fsctl"
    found = beside if beside.exists() else shutil.which("fsctl")
    if not found:
        raise CliError("cannot find the fsctl executable", hint="pass --fsctl PATH")
    return Path(found).absolute()


def _preflight(args: argparse.Namespace) -> list[str]:
    via = shlex.split(args.via) if args.via else []
    if not via:
        if os.geteuid() != 0:
            raise CliError(
                f"installing a system service needs root (it writes {args.unit_dir})",
                hint="run it with sudo, or see the unit first with --dry-run",
            )
        if not Path("/run/systemd/system").is_dir():
            raise CliError(
                "systemd is not running on this host (no /run/systemd/system)",
                hint="run `fsctl serve` under your init system or a container runtime instead",
            )
    return via


def _install(args: argparse.Namespace) -> int:
    from core.errors import StartupError
    from core.settings import load_settings

    try:
        s = load_settings(args.config, data_dir=args.data_dir)
    except StartupError as e:
        raise CliError(e.message, hint=e.hint) from None
    data_dir = (args.data_dir or Path("/var/lib/infracore")).absolute()
    if args.user:
        try:
            pwd.getpwnam(args.user)
        except KeyError:
            if not args.via and not args.dry_run:
                raise CliError(
                    f"there is no user {args.user!r}",
                    hint=f"create it: useradd --system --home {data_dir} --shell /usr/sbin/nologin {args.user}",
                ) from None
    unit = HostUnit(_fsctl_path(args.fsctl), data_dir, s.config_file, args.user)
    text = render(unit)
    path = Path(args.unit_dir) / f"{args.name}.service"
    if args.dry_run:
        print(f"# {path}")
        print(text, end="")
        return 0
    via = _preflight(args)
    before = _read(via, path)
    if before is not None and before != text:
        _write(via, path.with_name(path.name + ".previous"), before)
    _write(via, path, text)
    if args.user:  # its owner must be able to write it, and the sandbox needs it to exist
        _run(via, ["install", "-d", "-m", "700", "-o", args.user, "-g", args.user, str(data_dir)])
    _run(via, ["systemctl", "daemon-reload"])
    _run(via, ["systemctl", "enable", f"{args.name}.service"])
    if not args.no_start:
        _run(via, ["systemctl", "restart", f"{args.name}.service"])
    verb = "replaced" if before is not None and before != text else "unchanged" if before == text else "wrote"
    print(f"{verb} {path}" + (f" (the previous one kept as {path.name}.previous)" if verb == "replaced" else ""))
    print(f"enabled {args.name}.service" + ("" if args.no_start else " and (re)started it"))
    print(f"data dir {data_dir}" + (f", running as {args.user}" if args.user else ", running as root"))
    print(f"logs: journalctl -u {args.name} -f   status: systemctl status {args.name}")
    print(f"undo: fsctl uninstall-service{'' if args.name == 'infracore' else ' --name ' + args.name}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    via = _preflight(args)
    path = Path(args.unit_dir) / f"{args.name}.service"
    if _read(via, path) is None:
        raise CliError(f"{path} does not exist: nothing to uninstall")
    _run(via, ["systemctl", "disable", "--now", f"{args.name}.service"], check=False)
    _run(via, ["rm", "-f", str(path), str(path.with_name(path.name + ".previous"))])
    _run(via, ["systemctl", "daemon-reload"])
    print(f"stopped and disabled {args.name}.service, removed {path}")
    print(
        "kept: the data dir, and the services the platform supervised (they outlive it; stop them first "
        "with `fsctl service stop NAME` if they should go too)"
    )
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, fn, what in (
        ("install-service", _install, "install the platform as this host's systemd service"),
        ("uninstall-service", _uninstall, "stop, disable and remove that systemd service"),
    ):
        p = sub.add_parser(name, help=what, description=what)
        p.add_argument("--name", default="infracore", help="unit name (default infracore)")
        p.add_argument("--unit-dir", default="/etc/systemd/system", help="where the unit goes")
        p.add_argument(
            "--via", metavar="CMD", help="run writes and systemctl through this command prefix, e.g. 'ssh root@host'"
        )
        if name == "install-service":
            p.add_argument(
                "--user", help="run as this (existing, dedicated) user with CAP_NET_BIND_SERVICE only; default root"
            )
            p.add_argument("--data-dir", type=Path, help="default /var/lib/infracore")
            p.add_argument("--config", type=Path, help="config file (default /etc/infracore/config.yaml if present)")
            p.add_argument("--fsctl", type=Path, help="the fsctl executable (default: this one)")
            p.add_argument("--no-start", action="store_true", help="enable it, but do not start it now")
            p.add_argument("--dry-run", action="store_true", help="print the unit and do nothing")
        p.set_defaults(func=fn)
