"""sshd_config as sshd reads it (first value wins, Include, Match, aliases) and the sshd checks, as tables."""

from __future__ import annotations

import pytest

from secscan.checks_sshd import SshdFacts, check_sshd, effective
from secscan.sshd_config import DictFiles, dpkg_version, parse, parse_sshd_t, parse_version, split_line

MAIN = "/etc/ssh/sshd_config"
UBUNTU_MAIN = "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n"


def facts(files: dict[str, str], sshd_t: str | None = None, version: tuple[int, int] | None = (9, 2)) -> SshdFacts:
    return SshdFacts(parse(DictFiles(files)), parse_sshd_t(sshd_t) if sshd_t else None, version=version)


def by_id(findings):
    return {f.id: f for f in findings}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PasswordAuthentication yes", ("PasswordAuthentication", ["yes"])),
        ("  passwordauthentication\tno  ", ("passwordauthentication", ["no"])),
        ("Port=2222", ("Port", ["2222"])),
        ("Port = 2222", ("Port", ["2222"])),
        ('Banner "/etc/my banner"', ("Banner", ["/etc/my banner"])),
        ("PermitRootLogin no # not for root", ("PermitRootLogin", ["no"])),
        ("# PasswordAuthentication yes", None),
        ("   ", None),
    ],
)
def test_split_line(line, expected):
    assert split_line(line) == expected


@pytest.mark.parametrize(
    ("files", "keyword", "value", "where"),
    [
        # first match wins: an earlier line beats a later one, in the same file...
        (
            {MAIN: "PasswordAuthentication no\nPasswordAuthentication yes\n"},
            "passwordauthentication",
            "no",
            f"{MAIN}:1",
        ),
        # ... and keywords are case-insensitive
        (
            {MAIN: "passwordauthentication YES\nPasswordAuthentication no\n"},
            "passwordauthentication",
            "yes",
            f"{MAIN}:1",
        ),
        # an Include'd file read before the main file's own line wins (Ubuntu cloud images)
        (
            {
                MAIN: UBUNTU_MAIN + "PasswordAuthentication no\n",
                "/etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
            },
            "passwordauthentication",
            "yes",
            "/etc/ssh/sshd_config.d/50-cloud-init.conf:1",
        ),
        # globbed files are read in sorted order; a relative Include is relative to /etc/ssh
        (
            {
                MAIN: "Include sshd_config.d/*.conf\n",
                "/etc/ssh/sshd_config.d/20-b.conf": "PermitRootLogin yes\n",
                "/etc/ssh/sshd_config.d/10-a.conf": "PermitRootLogin no\n",
            },
            "permitrootlogin",
            "no",
            "/etc/ssh/sshd_config.d/10-a.conf:1",
        ),
        # nested includes
        (
            {
                MAIN: "Include a.conf\n",
                "/etc/ssh/a.conf": "Include /etc/ssh/b.conf\n",
                "/etc/ssh/b.conf": "\nPort 2200\n",
            },
            "port",
            "2200",
            "/etc/ssh/b.conf:2",
        ),
        # the deprecated alias sets the same option
        (
            {MAIN: "ChallengeResponseAuthentication yes\nKbdInteractiveAuthentication no\n"},
            "kbdinteractiveauthentication",
            "yes",
            f"{MAIN}:1",
        ),
        # a setting inside a Match block does not change the global value...
        ({MAIN: "Match User bob\n  PasswordAuthentication yes\n"}, "passwordauthentication", None, None),
        # ... and a Match block in an included file ends with that file (as sshd -T shows)
        (
            {
                MAIN: "Include /etc/ssh/x.conf\nPasswordAuthentication no\n",
                "/etc/ssh/x.conf": "Match User bob\nPasswordAuthentication yes\n",
            },
            "passwordauthentication",
            "no",
            f"{MAIN}:2",
        ),
    ],
)
def test_first_global_value(files, keyword, value, where):
    d = parse(DictFiles(files)).first(keyword)
    assert (d.value.lower() if d else None, d.where if d else None) == (value, where)


def test_match_blocks_are_reported_as_conditional():
    cfg = parse(
        DictFiles(
            {
                MAIN: "PasswordAuthentication no\nMatch Address 10.0.0.0/8\n"
                "  PasswordAuthentication yes\n  PasswordAuthentication no\nMatch all\n"
            }
        )
    )
    cond = cfg.conditional("passwordauthentication")
    assert [(d.match, d.value, d.line) for d in cond] == [("Address 10.0.0.0/8", "yes", 3)]
    found = by_id(check_sshd(SshdFacts(cfg, version=(9, 2))))
    f = found["sshd.match.passwordauthentication.address_10_0_0_0_8"]
    assert f.severity == "medium" and "conditional" in f.title and f"{MAIN}:3" in f.evidence[0]
    assert "sshd.password_authentication" not in found  # globally off


def test_include_loop_is_bounded_and_reported():
    cfg = parse(DictFiles({MAIN: "Include /etc/ssh/sshd_config\nPort 22\n"}))
    assert any("nested more than 16" in p for p in cfg.problems)
    assert len(cfg.files) == 17


def test_include_of_thousands_of_files_stops():
    files = {MAIN: "Include /etc/ssh/d/*\n", **{f"/etc/ssh/d/{i:05d}": "Port 22\n" for i in range(400)}}
    cfg = parse(DictFiles(files))
    assert len(cfg.files) == 256 and any("more than 256" in p for p in cfg.problems)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19", (9, 2)),
        ("OpenSSH_6.6.1p1 Ubuntu", (6, 6)),
        ("1:9.2p1-2+deb12u10", (9, 2)),
        ("1:7.4p1-10+deb9u7", (7, 4)),
        ("garbage", None),
    ],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_dpkg_version_reads_the_installed_package():
    status = (
        "Package: openssh-client\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\n"
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:8.9p1-3ubuntu0.10\n"
    )
    assert dpkg_version(status) == "1:8.9p1-3ubuntu0.10"
    removed = status.replace("install ok installed\nVersion: 1:8", "deinstall ok config-files\nVersion: 1:8")
    assert dpkg_version(removed) is None


# (files, version, expected {finding id: severity}) — the checks over effective values
CASES = [
    (
        "defaults of a current OpenSSH",
        {MAIN: ""},
        (9, 2),
        {
            "sshd.permit_root_login": "low",
            "sshd.password_authentication": "high",
            "sshd.kbd_interactive": "low",
            "sshd.port": "info",
        },
    ),
    (
        "root login and passwords: critical",
        {MAIN: "PermitRootLogin yes\n"},
        (9, 2),
        {
            "sshd.permit_root_login": "critical",
            "sshd.password_authentication": "high",
            "sshd.kbd_interactive": "low",
            "sshd.port": "info",
        },
    ),
    (
        "before OpenSSH 7.0 root could log in with a password by default",
        {MAIN: ""},
        (6, 6),
        {
            "sshd.permit_root_login": "critical",
            "sshd.password_authentication": "high",
            "sshd.kbd_interactive": "low",
            "sshd.port": "info",
        },
    ),
    (
        "PAM makes keyboard-interactive a password login",
        {MAIN: "PasswordAuthentication no\nUsePAM yes\n"},
        (9, 2),
        {"sshd.permit_root_login": "low", "sshd.kbd_interactive": "high", "sshd.port": "info"},
    ),
    (
        "hardened",
        {MAIN: "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPort 2222\n"},
        (9, 2),
        {},
    ),
    (
        "root with key only, root login yes but no passwords: medium",
        {MAIN: "PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPort 2222\n"},
        (9, 2),
        {"sshd.permit_root_login": "medium"},
    ),
    (
        "without-password is prohibit-password",
        {
            MAIN: "PermitRootLogin without-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication no\nPort 2222\n"
        },
        (9, 2),
        {"sshd.permit_root_login": "low", "sshd.pubkey_authentication": "medium"},
    ),
]


@pytest.mark.parametrize(("files", "version", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_checks(files, version, expected):
    assert {f.id: f.severity for f in check_sshd(facts(files, version=version))} == expected


def test_evidence_names_the_included_file_and_line_and_the_fix_is_exact():
    f = by_id(
        check_sshd(
            facts(
                {
                    MAIN: UBUNTU_MAIN,
                    "/etc/ssh/sshd_config.d/50-cloud-init.conf": "# cloud-init\nPasswordAuthentication yes\n",
                }
            )
        )
    )["sshd.password_authentication"]
    assert f.evidence == ("/etc/ssh/sshd_config.d/50-cloud-init.conf:2: PasswordAuthentication yes",)
    assert "`PasswordAuthentication no`" in f.fix and "00-infracore-hardening.conf" in f.fix
    assert "/etc/ssh/sshd_config.d/50-cloud-init.conf:2" in f.fix
    assert f.details == {"value": "yes", "source": "file"}


def test_sshd_t_is_the_truth_and_files_give_the_evidence_when_they_agree():
    files = {MAIN: "PasswordAuthentication yes\nPermitRootLogin no\n"}
    out = by_id(
        check_sshd(
            facts(
                files,
                "port 22\npermitrootlogin no\npasswordauthentication yes\n"
                "kbdinteractiveauthentication no\nusepam yes\npubkeyauthentication yes\n",
            )
        )
    )
    assert out["sshd.password_authentication"].evidence == (
        "sshd -T: passwordauthentication yes",
        f"{MAIN}:1: PasswordAuthentication yes",
    )
    # sshd -T disagreeing with the files (e.g. a file we could not read): sshd wins, no false file evidence
    out = by_id(
        check_sshd(
            facts(
                {MAIN: "PermitRootLogin no\n"},
                "permitrootlogin yes\npasswordauthentication no\nkbdinteractiveauthentication no\n",
            )
        )
    )
    assert out["sshd.permit_root_login"].severity == "medium"
    assert out["sshd.permit_root_login"].evidence[0] == "sshd -T: permitrootlogin yes"
    assert "not what sshd uses" in out["sshd.permit_root_login"].evidence[1]


def test_effective_source():
    f = facts({MAIN: "Port 2222\n"})
    assert effective(f, "permitrootlogin").source == "default"
    assert effective(f, "port").value == "2222"


def test_no_sshd_at_all():
    assert check_sshd(SshdFacts(parse(DictFiles({})), installed=False)) == []
    assert [f.id for f in check_sshd(SshdFacts(parse(DictFiles({}))))] == ["sshd.no_config"]
