"""Firewall, socket and platform checks over facts, as tables."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.platform_facts import CertFact, InstanceFact, PlatformFacts, RouteFact, TokenFact, UserFact
from secscan.checks_firewall import FirewallFacts, check_firewall, iptables_input_filter, nft_input_filter
from secscan.checks_platform import FileMode, check_file_modes, check_platform, static_root_risk
from secscan.checks_sockets import Listener, check_sockets, is_loopback, redact_cmdline
from secscan.findings import counts, failing, ordered

NFT_DROP = """table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\ttcp dport { 22, 80, 443 } accept
\t}
}"""
NFT_DEBIAN_DEFAULT = """#!/usr/sbin/nft -f
flush ruleset
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward { type filter hook forward priority filter; }
}"""
NFT_JUMP = """table inet t { chain input { type filter hook input priority 0; jump guard }
 chain guard { tcp dport 23 reject } }"""
NFT_FORWARD_ONLY = "table inet t { chain fwd { type filter hook forward priority 0; policy drop; } }"


@pytest.mark.parametrize(
    ("ruleset", "filters"),
    [
        (NFT_DROP, True),
        (NFT_DEBIAN_DEFAULT, False),
        (NFT_JUMP, True),
        (NFT_FORWARD_ONLY, False),
        ("", False),
        ("table inet t { chain input { type filter hook input priority 0; # policy drop;\n } }", False),
    ],
)
def test_nft_input_filter(ruleset, filters):
    assert nft_input_filter(ruleset)[0] is filters


IPT_UFW = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-N ufw-before-input
-A INPUT -j ufw-before-input
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
"""


@pytest.mark.parametrize(
    ("rules", "filters"),
    [
        ("-P INPUT DROP\n-P FORWARD ACCEPT\n", True),
        ("-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n", False),
        ("-P INPUT ACCEPT\n-A INPUT -p tcp --dport 5432 -j REJECT\n", True),
        (IPT_UFW, True),
        ("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", True),  # iptables-save / rules.v4
        ("-P INPUT ACCEPT\n-A INPUT -j loop\n-A loop -j loop\n", False),  # a chain jumping to itself terminates
    ],
)
def test_iptables_input_filter(rules, filters):
    assert iptables_input_filter(rules)[0] is filters


@pytest.mark.parametrize(
    ("facts", "ids"),
    [
        (FirewallFacts(), {"firewall.none"}),
        (FirewallFacts(iptables_rules="-P INPUT ACCEPT\n", iptables_source="iptables -S"), {"firewall.none"}),
        (FirewallFacts(ufw_enabled=False, ufw_source="/etc/ufw/ufw.conf"), {"firewall.none"}),
        (FirewallFacts(ufw_enabled=True, ufw_source="/etc/ufw/ufw.conf"), {"firewall.active"}),
        (FirewallFacts(firewalld_running=True, firewalld_source="firewall-cmd --state"), {"firewall.active"}),
        (FirewallFacts(nft_ruleset=NFT_DROP, nft_source="nft list ruleset"), {"firewall.active"}),
        (
            FirewallFacts(nft_ruleset=NFT_DROP, nft_source="/etc/nftables.conf", nft_enabled=False),
            {"firewall.active", "firewall.nft_not_enabled"},
        ),
    ],
)
def test_check_firewall(facts, ids):
    out = check_firewall(facts)
    assert {f.id for f in out} == ids
    none = [f for f in out if f.id == "firewall.none"]
    if none:
        assert none[0].severity == "medium" and "ufw default deny incoming" in none[0].fix


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("fe80::1%eth0", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_check_sockets_groups_by_port_and_names_the_process():
    ls = [
        Listener("tcp", "0.0.0.0", 5432, 900, "postgres", "postgres -D /var/lib/pg"),
        Listener("tcp", "::", 5432, 900, "postgres", "postgres -D /var/lib/pg"),
        Listener("tcp", "127.0.0.1", 6379, 901, "redis-server", "redis-server"),  # loopback: fine
        Listener("tcp", "0.0.0.0", 22, 1, "sshd", "sshd"),  # expected
        Listener("tcp", "0.0.0.0", 2222, 1, "sshd", "sshd"),  # allowed by the caller (sshd's own port)
        Listener("tcp", "0.0.0.0", 8000, 902, "python3", "python3 -m http.server"),
        Listener("tcp", "0.0.0.0", 2375, 903, "dockerd", "dockerd -H tcp://0.0.0.0:2375"),
        Listener("udp", "0.0.0.0", 5353, None, None, None),
        Listener("udp", "0.0.0.0", 68, 904, "dhclient", "dhclient eth0"),  # a DHCP client: skipped
        Listener("udp", "0.0.0.0", 45001, 905, "resolver", "resolver"),  # an ephemeral client socket: skipped
    ]
    out = {f.id: f for f in check_sockets(ls, (22, 80, 443, 2222))}
    assert {k: f.severity for k, f in out.items()} == {
        "sockets.tcp.5432": "high",
        "sockets.tcp.8000": "medium",
        "sockets.tcp.2375": "critical",
        "sockets.udp.5353": "low",
    }
    pg = out["sockets.tcp.5432"]
    assert pg.details["pids"] == [900] and pg.details["addresses"] == ["0.0.0.0", "::"]
    assert pg.evidence[0] == "tcp 0.0.0.0:5432 pid 900 postgres: postgres -D /var/lib/pg"
    assert "`kill 900`" in pg.fix and "port 5432 proto tcp" in pg.fix
    assert "pid ?" in out["sockets.udp.5353"].evidence[0] and "kill" not in out["sockets.udp.5353"].fix.split("`")[1]


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["redis-server", "--requirepass", "hunter2"], "redis-server --requirepass ***"),
        (["app", "--db-password=hunter2", "--port=5"], "app --db-password=*** --port=5"),
        (["app", "postgres://bob:hunter2@db/x"], "app postgres://bob:***@db/x"),
        (["app", "API_TOKEN=abc"], "app API_TOKEN=***"),
        (["nginx", "-g", "daemon off;"], "nginx -g daemon off;"),
    ],
)
def test_redact_cmdline(args, shown):
    assert redact_cmdline(args) == shown
    assert "hunter2" not in redact_cmdline(args)


F = stat.S_IFREG
D = stat.S_IFDIR


@pytest.mark.parametrize(
    ("path", "mode", "expected"),
    [
        ("/d", D | 0o700, None),
        ("/d", D | 0o755, ("platform.mode.data_dir", "high")),
        ("/d/state.db", F | 0o600, None),
        ("/d/state.db", F | 0o640, ("platform.mode.state.db", "high")),
        ("/d/state.db-wal", F | 0o644, ("platform.mode.state.db-wal", "high")),
        ("/d/initial-admin-password", F | 0o644, ("platform.mode.initial-admin-password", "critical")),
        ("/d/certs/example.com.key", F | 0o604, ("platform.mode.certs/example.com.key", "critical")),
        ("/d/certs/example.com.crt", F | 0o644, None),
        ("/d/console.sock", stat.S_IFSOCK | 0o666, ("platform.mode.console.sock", "high")),
        ("/d/logs", D | 0o777, ("platform.mode.logs", "high")),
        ("/d/logs/web/20260101.log", F | 0o644, None),
    ],
)
def test_file_modes(path, mode, expected):
    out = check_file_modes("/d", [FileMode(path, mode)])
    assert [(f.id, f.severity) for f in out] == ([expected] if expected else [])
    if out:
        assert out[0].fix.startswith("`chmod 0") and path in out[0].fix


@pytest.mark.parametrize(
    ("static_dir", "severity"),
    [
        ("/", "critical"),
        ("/etc", "critical"),
        ("/etc/nginx", "critical"),
        ("/root", "critical"),
        ("/proc/self", "critical"),
        ("/var/lib", "critical"),
        ("/var/lib/infracore", "critical"),
        ("/var/lib/infracore/certs", "critical"),
        ("/var", "critical"),  # /var holds the data dir
        ("/home", "high"),
        ("/home/alice", "high"),
        ("/tmp", "high"),
        ("/srv/www/site", None),
        ("/var/www/html", None),
        ("/home/alice/site/public", None),
    ],
)
def test_static_root_risk(static_dir, severity):
    risk = static_root_risk(static_dir, "/var/lib/infracore")
    assert (risk[0] if risk else None) == severity


NOW = 1_800_000_000.0
DAY = 86400.0


def test_check_platform():
    facts = PlatformFacts(
        data_dir=Path("/var/lib/infracore"),
        console_host="0.0.0.0",
        console_port=7070,
        edge_ports=(80, 443),
        users=(
            UserFact("admin", "admin", totp=False),
            UserFact("ops", "admin", totp=True),
            UserFact("old", "admin", totp=False, disabled=True),
            UserFact("v", "viewer", totp=False),
        ),
        tokens=(
            TokenFact(1, "ci", "admin", "admin", NOW, NOW + 4 * 365 * DAY),
            TokenFact(2, "dash", "viewer", "admin", NOW, NOW + 400 * DAY),
            TokenFact(3, "ok", "admin", "admin", NOW, NOW + 90 * DAY),
        ),
        routes=(
            RouteFact(1, "a.example", "auto", False),
            RouteFact(2, "b.example", "auto", True),
            RouteFact(3, "c.example", "off", False),
            RouteFact(4, "files.example", "off", False, "/"),
        ),
        certs=(
            CertFact(("a.example",), NOW + 3 * DAY, "acme"),
            CertFact(("b.example",), NOW + 10 * DAY, "acme"),
            CertFact(("c.example",), NOW - DAY, "imported"),
            CertFact(("d.example",), NOW + 60 * DAY, "acme"),
        ),
        instances=(InstanceFact("web", "web-0", 4242), InstanceFact("db", "db-0", 4343)),
    )
    listeners = [Listener("tcp", "0.0.0.0", 9000, 4242, "web"), Listener("tcp", "127.0.0.1", 9001, 4343, "db")]
    out = {f.id: f.severity for f in check_platform(facts, NOW, listeners=listeners)}
    assert out == {
        "platform.admin_no_2fa.admin": "medium",
        "platform.token_long_lived.1": "medium",
        "platform.token_long_lived.2": "low",
        "platform.route_no_redirect.1": "medium",
        "platform.static_root.4": "critical",
        "platform.cert_expiring.a.example": "high",
        "platform.cert_expiring.b.example": "medium",
        "platform.cert_expiring.c.example": "critical",
        "platform.console_exposed": "high",
        "platform.service_exposed.web.tcp.9000": "high",
    }


def test_ordering_and_exit_rule():
    from secscan.findings import Finding

    fs = [
        Finding("b", "x", "low", "", (), ""),
        Finding("a", "x", "high", "", (), ""),
        Finding("a", "x", "info", "dup", (), ""),
        Finding("c", "x", "info", "", (), ""),
    ]
    assert [f.id for f in ordered(fs)] == ["a", "b", "c"]
    assert counts(ordered(fs)) == {"critical": 0, "high": 1, "medium": 0, "low": 1, "info": 1}
    assert failing(fs) and not failing(fs[:1])
