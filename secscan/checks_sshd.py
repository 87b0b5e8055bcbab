"""sshd checks: the effective root login, password and keyboard-interactive authentication, public-key
authentication and port, with the file and line that set each, plus weaker settings inside Match blocks.

Pure: `SshdFacts` in, findings out. `sshd -T`, when it ran, is the truth for global values (it knows
every default and quirk); the parsed files supply the evidence and the Match blocks it does not show.
"""

from __future__ import annotations

from dataclasses import dataclass

from secscan.findings import Finding, Severity
from secscan.sshd_config import Directive, SshdConfig, defaults

DROP_IN = "/etc/ssh/sshd_config.d/00-infracore-hardening.conf"
RELOAD = "sshd -t && systemctl reload ssh"
HARDEN = "scripts/harden-ssh.sh --apply"


@dataclass(frozen=True)
class SshdFacts:
    config: SshdConfig
    sshd_t: dict[str, list[str]] | None = None  # `sshd -T` output, when it ran
    sshd_t_error: str | None = None
    version: tuple[int, int] | None = None
    version_source: str = "unknown"
    installed: bool = True  # False: no sshd binary and no config: nothing to check


@dataclass(frozen=True)
class Effective:
    keyword: str
    value: str  # lower case
    source: str  # "sshd -T" | "file" | "default"
    directive: Directive | None = None
    disagreeing: Directive | None = None  # a file line sshd -T did not follow

    def evidence(self, facts: SshdFacts) -> list[str]:
        lines = []
        if self.source == "sshd -T":
            lines.append(f"sshd -T: {self.keyword} {self.value}")
        if self.directive is not None:
            lines.append(self.directive.evidence())
        elif self.disagreeing is not None:
            lines.append(
                f"{self.disagreeing.evidence()} — not what sshd uses (set elsewhere: an unread file "
                "or the command line?)"
            )
        elif self.source in ("default", "sshd -T"):
            ver = f"{facts.version[0]}.{facts.version[1]}" if facts.version else "current"
            lines.append(
                f"not set in {', '.join(facts.config.files) or 'any file'}: OpenSSH {ver} default ({self.value})"
            )
        return lines


def effective(facts: SshdFacts, keyword: str) -> Effective:
    d = facts.config.first(keyword)
    if facts.sshd_t and keyword in facts.sshd_t:
        value = facts.sshd_t[keyword][0].lower()
        agrees = d is not None and _norm(d.value) == _norm(value)
        return Effective(keyword, _norm(value), "sshd -T", d if agrees else None, None if agrees else d)
    if d is not None:
        return Effective(keyword, _norm(d.value), "file", d)
    return Effective(keyword, defaults(facts.version)[keyword], "default")


def _norm(value: str) -> str:
    v = value.strip().lower()
    return "prohibit-password" if v == "without-password" else v


def _fix(line: str, eff: Effective | None = None) -> str:
    where = ""
    if eff is not None and eff.directive is not None:
        where = f" (or change {eff.directive.where} to it)"
    return f"put `{line}` in {DROP_IN}{where}, then `{RELOAD}`; `{HARDEN}` does this safely"


def check_sshd(facts: SshdFacts) -> list[Finding]:
    cfg = facts.config
    if not cfg.found and not facts.sshd_t:
        if not facts.installed:
            return []
        return [
            Finding(
                "sshd.no_config",
                "sshd",
                "info",
                "No sshd configuration found",
                ("/etc/ssh/sshd_config does not exist",),
                "nothing to do if sshd is not installed",
            )
        ]
    out: list[Finding] = []
    root = effective(facts, "permitrootlogin")
    pw = effective(facts, "passwordauthentication")
    kbd = effective(facts, "kbdinteractiveauthentication")
    pam = effective(facts, "usepam")
    pubkey = effective(facts, "pubkeyauthentication")
    passwords = pw.value == "yes" or (kbd.value == "yes" and pam.value == "yes")

    if root.value == "yes":
        sev: Severity = "critical" if passwords else "medium"
        title = "root can log in over SSH" + (" with a password" if passwords else " (with a key)")
        out.append(
            Finding(
                "sshd.permit_root_login",
                "sshd",
                sev,
                title,
                tuple(root.evidence(facts)),
                _fix("PermitRootLogin no", root) + "; log in as a user with sudo instead",
                {"value": root.value, "source": root.source},
            )
        )
    elif root.value == "prohibit-password":
        out.append(
            Finding(
                "sshd.permit_root_login",
                "sshd",
                "low",
                "root can log in over SSH with a key",
                tuple(root.evidence(facts)),
                _fix("PermitRootLogin no", root) + " once a sudo user has a key",
                {"value": root.value, "source": root.source},
            )
        )
    if pw.value == "yes":
        out.append(
            Finding(
                "sshd.password_authentication",
                "sshd",
                "high",
                "SSH accepts passwords (open to brute force)",
                tuple(pw.evidence(facts)),
                _fix("PasswordAuthentication no", pw) + " after checking your key works",
                {"value": pw.value, "source": pw.source},
            )
        )
    if kbd.value == "yes":
        with_pam = pam.value == "yes"
        ev = [*kbd.evidence(facts), *(f"UsePAM: {e}" for e in pam.evidence(facts))]
        out.append(
            Finding(
                "sshd.kbd_interactive",
                "sshd",
                "high" if with_pam else "low",
                "SSH keyboard-interactive login is on"
                + (" (with PAM: passwords are accepted even with PasswordAuthentication no)" if with_pam else ""),
                tuple(ev),
                _fix("KbdInteractiveAuthentication no", kbd),
                {"value": kbd.value, "usepam": pam.value},
            )
        )
    if pubkey.value == "no":
        out.append(
            Finding(
                "sshd.pubkey_authentication",
                "sshd",
                "medium",
                "SSH public-key login is off",
                tuple(pubkey.evidence(facts)),
                _fix("PubkeyAuthentication yes", pubkey),
                {"value": pubkey.value},
            )
        )
    ports = _ports(facts)
    if ports == ["22"]:
        d = cfg.first("port")
        port_ev = (d.evidence() if d else "Port not set: default 22",)
        out.append(
            Finding(
                "sshd.port",
                "sshd",
                "info",
                "sshd listens on the default port 22",
                port_ev,
                "optional: `Port 2222` (fewer scanner log lines; not a defence by itself) — "
                "allow the new port in the firewall first",
                {"ports": ports},
            )
        )
    out += _conditional(facts)
    if cfg.problems:
        out.append(
            Finding(
                "sshd.config_problems",
                "sshd",
                "low",
                "Parts of the sshd configuration could not be read",
                tuple(cfg.problems),
                "check the Include lines named above",
                {},
            )
        )
    if facts.sshd_t_error:
        out.append(
            Finding(
                "sshd.sshd_t",
                "sshd",
                "info",
                "`sshd -T` could not run: values come from the files",
                (facts.sshd_t_error,),
                "run the scan as root where sshd is installed for exact values",
                {},
            )
        )
    return out


def _ports(facts: SshdFacts) -> list[str]:
    if facts.sshd_t and "port" in facts.sshd_t:
        return facts.sshd_t["port"]
    ports = [a for d in facts.config.all_global("port") for a in d.args]
    return ports or ["22"]


def sshd_ports(facts: SshdFacts) -> list[int]:
    return [int(p) for p in _ports(facts) if p.isdigit()]


# A Match block that turns these on widens access for the connections it matches.
_WEAK = {"passwordauthentication": ("yes",), "kbdinteractiveauthentication": ("yes",), "permitrootlogin": ("yes",)}


def _conditional(facts: SshdFacts) -> list[Finding]:
    out = []
    for keyword, weak in _WEAK.items():
        for d in facts.config.conditional(keyword):
            if _norm(d.value) not in weak:
                continue
            everyone = (d.match or "").lower() in ("all", "user *", "address *", "address 0.0.0.0/0")
            out.append(
                Finding(
                    f"sshd.match.{keyword}.{_slug(d.match or '')}",
                    "sshd",
                    "high" if everyone else "medium",
                    f"`{d.written} {d.value}` applies to connections matching `Match {d.match}` (conditional)",
                    (d.evidence(),),
                    f"remove line {d.line} of {d.file} (or set it to `no`), then `{RELOAD}`",
                    {"match": d.match, "file": d.file, "line": d.line, "value": d.value},
                )
            )
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())[:60]
