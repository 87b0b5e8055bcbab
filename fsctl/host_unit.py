"""The systemd unit that runs the platform itself as the host's service (`fsctl install-service`): pure
rendering, so every directive is tested on text.

Choices, each for a reason:
- `KillMode=process`: stopping or restarting the platform stops `fsctl serve` only. The services it
  supervises outlive it (DESIGN: a platform upgrade is not an outage) and are adopted at the next start;
  systemd's default (`control-group`) would kill every native service with it.
- `Delegate=yes`: orch makes a cgroup per instance under the platform's own (memory and CPU limits).
- `Restart=always` with a short back-off; `LimitNOFILE` high, since the edge holds a socket per client.
- A dedicated user gets `AmbientCapabilities=CAP_NET_BIND_SERVICE` (ports 80/443) and nothing else; as
  root the sandboxing stops short of what managing services needs (writing units under /etc, starting
  containers, other users' processes): kernel tunables, modules, clock, hostname and realtime are
  protected; the file system and devices are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class HostUnit:
    fsctl: Path  # the fsctl executable to run
    data_dir: Path
    config: Path | None = None
    user: str | None = None  # None: root
    extra_args: tuple[str, ...] = ()


def _arg(a: str) -> str:
    if _SAFE.match(a):
        return a.replace("%", "%%")
    # systemd's quoting: C escapes inside double quotes, `%` specifiers doubled, `$` not expanded; a newline must
    # never end the line (it would start a directive of the caller's choosing)
    esc = "".join(
        f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c for c in a.replace("\\", "\\\\").replace('"', '\\"')
    )
    return '"' + esc.replace("%", "%%").replace("$", "$$") + '"'


def render(u: HostUnit) -> str:
    argv = [str(u.fsctl), "serve", "--data-dir", str(u.data_dir)]
    if u.config is not None:
        argv += ["--config", str(u.config)]
    argv += list(u.extra_args)
    lines = [
        "# Written by `fsctl install-service`; remove with `fsctl uninstall-service`.",
        "[Unit]",
        "Description=Infra-Core: edge proxy and control plane",
        "After=network-online.target docker.service",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_arg(a) for a in argv),
        "Environment=INFRACORE_LOG_FORMAT=json",
        "Restart=always",
        "RestartSec=2",
        "TimeoutStopSec=30",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "UMask=0077",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
    ]
    if u.user is not None:
        lines += [
            f"User={u.user}",
            f"Group={u.user}",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            "NoNewPrivileges=yes",
            "ProtectSystem=full",
            f"ReadWritePaths={_arg(str(u.data_dir))}",
        ]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)
