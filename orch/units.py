"""The systemd runtime's pure part: a unit file rendered from an `InstanceConfig`, the parsing of
`systemctl show` output, the `ExitStatus` of an ended unit, and journal JSON entries as log lines.

Restarts are orch's, as for every runtime: units get `Restart=no` and orch's supervisor applies the
spec's `restart_policy`, back-off and crash-loop detection. Stop is systemd's own (`KillSignal=` from
`stop_signal`, `TimeoutStopSec=` from `stop_timeout`, then SIGKILL to the whole control group).
"""

from __future__ import annotations

import json
import math
import re
import signal as _signal
from collections.abc import Mapping
from typing import Any

from core.ports import Stream
from orch.runtime import ExitStatus, InstanceConfig

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "NRestarts",
    "ExecMainCode",
    "ExecMainStatus",
    "InvocationID",
    "ControlGroup",
    "ExecMainStartTimestampMonotonic",
)
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
# ExecMainCode is a waitid() si_code: CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3.
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3


def unit_name(prefix: str, config: InstanceConfig) -> str:
    return f"{prefix}-{config.service}-{config.index}.service"


def _escape(text: str) -> str:
    """A value systemd reads back as `text`: specifiers (`%`) doubled, C escapes for the rest."""
    text = text.replace("%", "%%")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


def exec_arg(arg: str) -> str:
    """One ExecStart= argument: `$` doubled (no variable expansion: the argv is final), quoted if needed."""
    if arg and _SAFE.match(arg):
        return arg.replace("%", "%%")
    return '"' + _escape(arg).replace("$", "$$") + '"'


def render_unit(config: InstanceConfig, *, description: str | None = None) -> str:
    """The unit file text for `config` (a native command run by systemd)."""
    if not config.argv:
        raise ValueError(f"{config.instance}: the systemd runtime needs cmd")
    if "\n" in "".join(config.argv) or not config.argv[0].startswith("/"):
        # systemd looks programs up itself only in a fixed path; orch resolves them first (see SystemdRuntime).
        raise ValueError(f"{config.instance}: the program must be an absolute path, got {config.argv[0]!r}")
    lines = [
        "# Written by Infra-Core's orch: edit the service spec instead (this file is replaced on apply).",
        "[Unit]",
        f"Description={_escape(description or f'Infra-Core {config.instance} (release {config.version})')}",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(exec_arg(a) for a in config.argv),
    ]
    for k, v in config.env.items():
        lines.append(f'Environment="{_escape(f"{k}={v}")}"')
    if config.workdir:
        lines.append(f"WorkingDirectory={_escape(config.workdir)}")
    if config.user:
        lines.append(f"User={_escape(config.user)}")
    if config.memory_bytes:
        lines.append(f"MemoryMax={config.memory_bytes}")
        lines.append("MemorySwapMax=0")
    if config.cpu:
        lines.append(f"CPUQuota={round(config.cpu * 100)}%")
    lines += [
        "CPUAccounting=yes",
        "MemoryAccounting=yes",
        "Restart=no",
        f"KillSignal={_signal.Signals(config.stop_signal).name}",
        "KillMode=control-group",
        "SendSIGKILL=yes",
        f"TimeoutStopSec={max(1, math.ceil(config.stop_timeout_s))}",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={config.instance}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def parse_show(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p A,B u1 u2` output (blocks of KEY=VALUE separated by blank lines) by unit `Id`."""
    out: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            out[props["Id"]] = props
    return out


def is_running(props: Mapping[str, str]) -> bool:
    return props.get("ActiveState") in ("active", "activating", "deactivating", "reloading")


def unit_exit_status(props: Mapping[str, str]) -> ExitStatus:
    """How a unit's main process ended, from `systemctl show` after it stopped."""
    if props.get("Result") == "oom-kill":
        return ExitStatus(signal=int(_signal.SIGKILL), oom_killed=True)
    try:
        code, status = int(props.get("ExecMainCode", "0")), int(props.get("ExecMainStatus", "0"))
    except ValueError:
        return ExitStatus(note="exit status unknown (unreadable unit state)")
    if code in (_CLD_KILLED, _CLD_DUMPED):
        return ExitStatus(signal=status)
    if code == _CLD_EXITED:
        setup = setup_failure(props)
        return ExitStatus(code=status, note=setup or "")
    if code == 0 and props.get("Result") == "success":
        # A unit that ended cleanly is unloaded and forgets its ExecMain* values: "success" is exit code 0
        # (or a clean SIGTERM/SIGINT/SIGHUP/SIGPIPE death, which systemd counts as success too).
        return ExitStatus(code=0)
    return ExitStatus(
        note=f"exit status unknown (unit {props.get('ActiveState', '?')}, result {props.get('Result', '?')})"
    )


# systemd's own exit codes for a failure before the program ran (systemd.exec(5), "Process exit codes").
_SETUP_FAILURES = {
    200: "changing to the working directory failed (does it exist?)",
    203: "the program cannot be executed (missing, or not executable)",
    217: "the user does not exist",
    216: "the group does not exist",
    214: "setting up the scheduling failed",
    209: "setting up standard output failed",
    226: "setting up the namespace failed",
    218: "capabilities could not be set",
    204: "memory limits could not be set",
}


def setup_failure(props: Mapping[str, str]) -> str | None:
    """What failed before the program could run, when systemd reports one of its own exit codes."""
    try:
        code, status = int(props.get("ExecMainCode", "0")), int(props.get("ExecMainStatus", "0"))
    except ValueError:
        return None
    if code != _CLD_EXITED or not 200 <= status <= 243:
        return None
    return f"{_SETUP_FAILURES.get(status, 'the execution environment could not be set up')} (status {status})"


def journal_line(raw: bytes) -> tuple[Stream, bytes | None, str | None] | None:
    """(stream, message or None, cursor) from one `journalctl -o json` line; None when it is not an entry.
    The message is None for entries that are not the program's output (systemd's own notes). The journal
    does not record which of stdout/stderr a line came from; a line logged at priority err or worse (`<3>`
    prefixes, see sd-daemon(3)) is reported as stderr, the rest as stdout."""
    try:
        entry: dict[str, Any] = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    cursor = entry.get("__CURSOR") if isinstance(entry.get("__CURSOR"), str) else None
    msg = entry.get("MESSAGE")
    if entry.get("_TRANSPORT") != "stdout":
        return "stdout", None, cursor
    if isinstance(msg, list):  # non-UTF-8 messages come as byte arrays
        data: bytes | None = bytes(int(b) & 0xFF for b in msg if isinstance(b, int))
    elif isinstance(msg, str):
        data = msg.encode()
    else:
        data = None
    try:
        prio = int(entry.get("PRIORITY", 6))
    except (TypeError, ValueError):
        prio = 6
    return ("stderr" if prio <= 3 else "stdout"), data, cursor
