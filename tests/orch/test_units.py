"""The systemd runtime's pure part: unit rendering (quoting that systemd reads back as written), `systemctl
show` parsing, exit statuses, journal entries."""

from __future__ import annotations

import json
import signal

import pytest

from orch.runtime import ExitStatus, InstanceConfig
from orch.units import exec_arg, journal_line, parse_show, render_unit, setup_failure, unit_exit_status, unit_name


def _cfg(**kw: object) -> InstanceConfig:
    base: dict[str, object] = {
        "service": "web",
        "index": 1,
        "argv": ("/usr/bin/python3", "-m", "http.server"),
        "runtime": "systemd",
    }
    return InstanceConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_unit_text() -> None:
    text = render_unit(
        _cfg(
            env={"A": "x y", "P": "50%", "Q": 'say "hi"\\now'},
            workdir="/srv/web",
            user="www-data",
            memory_bytes=256 << 20,
            cpu=1.5,
            stop_signal=int(signal.SIGINT),
            stop_timeout_s=2.5,
            version=4,
        )
    )
    lines = text.splitlines()
    assert "Description=Infra-Core web-1 (release 4)" in lines
    assert "ExecStart=/usr/bin/python3 -m http.server" in lines
    assert 'Environment="A=x y"' in lines and 'Environment="P=50%%"' in lines
    assert 'Environment="Q=say \\"hi\\"\\\\now"' in lines
    for expected in (
        "Type=exec",
        "WorkingDirectory=/srv/web",
        "User=www-data",
        f"MemoryMax={256 << 20}",
        "MemorySwapMax=0",
        "CPUQuota=150%",
        "Restart=no",
        "KillSignal=SIGINT",
        "KillMode=control-group",
        "TimeoutStopSec=3",
        "SyslogIdentifier=web-1",
        "WantedBy=multi-user.target",
    ):
        assert expected in lines, expected
    assert unit_name("infracore", _cfg()) == "infracore-web-1.service"
    bare = render_unit(_cfg()).splitlines()
    assert not any(
        line.startswith(("MemoryMax", "CPUQuota", "User=", "WorkingDirectory", "Environment")) for line in bare
    )


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("plain", "plain"),
        ("/usr/bin/x", "/usr/bin/x"),
        ("a b", '"a b"'),
        ("$HOME", '"$$HOME"'),
        ("100%", "100%%"),
        ('q"uote', '"q\\"uote"'),
        ("back\\slash", '"back\\\\slash"'),
        ("", '""'),
        ("line\nbreak", '"line\\nbreak"'),
        (";", '";"'),
    ],
)
def test_exec_arguments_are_quoted_for_systemd(arg: str, expected: str) -> None:
    assert exec_arg(arg) == expected


def test_hostile_commands_are_refused() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        render_unit(_cfg(argv=("python3",)))
    with pytest.raises(ValueError, match="absolute path"):
        render_unit(_cfg(argv=("/bin/sh", "-c", "x\n[Service]\nExecStartPre=/bin/rm -rf /")))  # no unit injection
    with pytest.raises(ValueError, match="needs cmd"):
        render_unit(_cfg(argv=()))


def test_env_cannot_inject_unit_lines() -> None:
    text = render_unit(_cfg(env={"A": "x\nExecStartPre=/bin/false"}, workdir="/srv\nUser=root"))
    assert "\nExecStartPre" not in text and "\nUser=root" not in text


def test_show_output_by_unit() -> None:
    text = "Id=a.service\nActiveState=active\nMainPID=12\n\nActiveState=failed\nId=b.service\nResult=oom-kill\n"
    got = parse_show(text)
    assert got["a.service"]["MainPID"] == "12" and got["b.service"]["Result"] == "oom-kill"
    assert parse_show("") == {}


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"Result": "exit-code", "ExecMainCode": "1", "ExecMainStatus": "3"}, ExitStatus(code=3)),
        ({"Result": "signal", "ExecMainCode": "2", "ExecMainStatus": "9"}, ExitStatus(signal=9)),
        ({"Result": "core-dump", "ExecMainCode": "3", "ExecMainStatus": "11"}, ExitStatus(signal=11)),
        ({"Result": "oom-kill", "ExecMainCode": "2", "ExecMainStatus": "9"}, ExitStatus(signal=9, oom_killed=True)),
        ({"Result": "success", "ExecMainCode": "0", "ExecMainStatus": "0"}, ExitStatus(code=0)),
        (
            {"Result": "exit-code", "ExecMainCode": "1", "ExecMainStatus": "200"},
            ExitStatus(code=200, note="changing to the working directory failed (does it exist?) (status 200)"),
        ),
        (
            {"ActiveState": "inactive", "Result": "resources"},
            ExitStatus(note="exit status unknown (unit inactive, result resources)"),
        ),
        ({"ExecMainCode": "x"}, ExitStatus(note="exit status unknown (unreadable unit state)")),
    ],
)
def test_unit_exit_status(props: dict[str, str], expected: ExitStatus) -> None:
    assert unit_exit_status(props) == expected


def test_setup_failures_are_named() -> None:
    assert setup_failure({"ExecMainCode": "1", "ExecMainStatus": "203"}).startswith("the program cannot be executed")
    assert setup_failure({"ExecMainCode": "1", "ExecMainStatus": "3"}) is None
    assert setup_failure({"ExecMainCode": "2", "ExecMainStatus": "203"}) is None


def test_journal_entries() -> None:
    def entry(**kw: object) -> bytes:
        return json.dumps({"__CURSOR": "c1", "_TRANSPORT": "stdout", "PRIORITY": "6", **kw}).encode()

    assert journal_line(entry(MESSAGE="hello")) == ("stdout", b"hello", "c1")
    assert journal_line(entry(MESSAGE="bad", PRIORITY="3")) == ("stderr", b"bad", "c1")
    assert journal_line(entry(MESSAGE=[104, 105, 255])) == ("stdout", b"hi\xff", "c1")
    assert journal_line(entry(MESSAGE="note", _TRANSPORT="journal")) == ("stdout", None, "c1")
    assert journal_line(entry(MESSAGE=None, PRIORITY="x")) == ("stdout", None, "c1")
    for garbage in (b"", b"not json", b"[1, 2]", b'"text"'):
        assert journal_line(garbage) is None
