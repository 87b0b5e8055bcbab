"""Firewall checks: does anything filter incoming traffic — nftables, iptables, ufw or firewalld?

Pure: the rulesets' text and the tools' states in (`FirewallFacts`), findings out. A ruleset filters
input when a chain on the input hook (nftables) or INPUT (iptables) has a drop policy or a rule that
drops or rejects, directly or through a chain it jumps to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secscan.findings import Finding

UFW_FIX = (
    "`ufw default deny incoming && ufw allow 22/tcp && ufw allow 80/tcp && ufw allow 443/tcp && ufw enable` "
    "(or an nftables input chain with `policy drop` in /etc/nftables.conf and "
    "`systemctl enable --now nftables`)"
)


@dataclass(frozen=True)
class FirewallFacts:
    nft_ruleset: str | None = None
    nft_source: str = ""  # "nft list ruleset" | "/etc/nftables.conf"
    nft_enabled: bool | None = None  # nftables.service enabled at boot (file mode only)
    iptables_rules: str | None = None  # `iptables -S` or iptables-save text
    iptables_source: str = ""
    ufw_enabled: bool | None = None
    ufw_source: str = ""
    firewalld_running: bool | None = None
    firewalld_source: str = ""
    errors: tuple[str, ...] = ()


def _blocks(text: str, word: str) -> list[tuple[str, str]]:
    """(name, body) of each `word NAME { … }` block, braces matched."""
    out = []
    for m in re.finditer(rf"\b{word}\s+([^\s{{]+)\s*\{{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1), text[m.end() : i - 1]))
    return out


def nft_input_filter(ruleset: str) -> tuple[bool, str]:
    """(filters input, description) for an nftables ruleset (`nft list ruleset` or nftables.conf)."""
    text = re.sub(r"#[^\n]*", "", ruleset)
    chains = {name: body for name, body in _blocks(text, "chain")}
    input_chains = [n for n, b in chains.items() if re.search(r"\bhook\s+input\b", b)]
    if not input_chains:
        return False, "no chain on the input hook"

    def drops(name: str, seen: set[str]) -> bool:
        if name in seen or name not in chains:
            return False
        seen.add(name)
        body = chains[name]
        for line in re.split(r"[\n;]", body):
            line = line.strip()
            if re.search(r"\bpolicy\s+drop\b", line) or re.search(r"(^|\s)(drop|reject)(\s|$)", line):
                return True
            jump = re.search(r"\b(?:jump|goto)\s+(\S+)", line)
            if jump and drops(jump.group(1), seen):
                return True
        return False

    for name in input_chains:
        if drops(name, set()):
            policy = re.search(r"\bpolicy\s+(\w+)", chains[name])
            return True, f"chain {name}: policy {policy.group(1) if policy else 'accept'}, drops or rejects"
    return False, f"input chain(s) {', '.join(input_chains)} accept everything"


def iptables_input_filter(rules: str) -> tuple[bool, str]:
    """(filters input, description) for `iptables -S` / iptables-save output."""
    policy = re.search(r"^(?:-P INPUT|:INPUT) (\w+)", rules, re.M)
    if policy and policy.group(1).upper() == "DROP":
        return True, "INPUT policy DROP"
    by_chain: dict[str, list[str]] = {}
    for m in re.finditer(r"^-A (\S+) (.*)$", rules, re.M):
        by_chain.setdefault(m.group(1), []).append(m.group(2))

    def drops(chain: str, seen: set[str]) -> bool:
        if chain in seen:
            return False
        seen.add(chain)
        for rule in by_chain.get(chain, []):
            target = re.search(r"-[jg] (\S+)", rule)
            if not target:
                continue
            if target.group(1) in ("DROP", "REJECT") or drops(target.group(1), seen):
                return True
        return False

    if drops("INPUT", set()):
        return True, "INPUT has rules that drop or reject"
    return False, f"INPUT policy {policy.group(1) if policy else 'ACCEPT'}, no dropping rules"


def check_firewall(facts: FirewallFacts) -> list[Finding]:
    active: list[str] = []
    evidence: list[str] = []
    if facts.nft_ruleset is not None:
        ok, why = nft_input_filter(facts.nft_ruleset)
        evidence.append(f"nftables ({facts.nft_source}): {why}")
        if ok:
            active.append("nftables")
    if facts.iptables_rules is not None:
        ok, why = iptables_input_filter(facts.iptables_rules)
        evidence.append(f"iptables ({facts.iptables_source}): {why}")
        if ok:
            active.append("iptables")
    if facts.ufw_enabled is not None:
        evidence.append(f"ufw ({facts.ufw_source}): {'enabled' if facts.ufw_enabled else 'disabled'}")
        if facts.ufw_enabled:
            active.append("ufw")
    if facts.firewalld_running is not None:
        evidence.append(f"firewalld ({facts.firewalld_source}): {'on' if facts.firewalld_running else 'off'}")
        if facts.firewalld_running:
            active.append("firewalld")
    evidence += facts.errors
    out: list[Finding] = []
    if not active:
        out.append(
            Finding(
                "firewall.none",
                "firewall",
                "medium",
                "No host firewall filters incoming traffic",
                tuple(evidence or ["no nftables, iptables, ufw or firewalld found"]),
                UFW_FIX,
                {"checked": [e.split(" ", 1)[0] for e in evidence]},
            )
        )
    else:
        out.append(
            Finding(
                "firewall.active",
                "firewall",
                "info",
                f"Host firewall on: {', '.join(active)}",
                tuple(evidence),
                "nothing to do",
                {"active": active},
            )
        )
        if "nftables" in active and facts.nft_enabled is False and facts.nft_source.startswith("/"):
            out.append(
                Finding(
                    "firewall.nft_not_enabled",
                    "firewall",
                    "medium",
                    "nftables rules exist but nftables.service is not enabled at boot",
                    (f"{facts.nft_source} filters input; no nftables.service link in /etc/systemd/system/*.wants",),
                    "`systemctl enable --now nftables`",
                    {},
                )
            )
    return out
