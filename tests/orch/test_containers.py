"""The docker runtime's pure part (create body, labels, exit status, log frames) and the volume rules."""

from __future__ import annotations

import signal
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.containers import LogFrames, create_body, exit_status, labels, ports_from_labels
from orch.instances import build_config, port_requests
from orch.runtime import ExitStatus, InstanceConfig
from orch.spec import load_spec
from orch.volumes import Volume, host_mount_problem, parse_volume


def _cfg(**kw: object) -> InstanceConfig:
    base: dict[str, object] = {"service": "blog", "index": 2, "image": "nginx:1.27", "runtime": "docker"}
    return InstanceConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_create_body_from_a_spec() -> None:
    spec = load_spec(
        "name: blog\nimage: infracore-test/busybox:1\ncmd: [httpd, -f, -p, '${PORT}']\nentrypoint: [/bin/env]\n"
        "workdir: /www\nuser: '1000:1000'\nenv: {A: '${PORT}', B: x}\n"
        "ports: [{name: http, internal: 80}, {name: admin}]\nvolumes: [data:/data, '/srv/site:/www:ro']\n"
        "resources: {memory: 64Mi, cpu: 0.5}\nstop_signal: SIGINT\nstop_timeout: 2.5s\n"
    )
    assert [p.internal for p in port_requests(spec)] == ["auto", "auto"]  # host ports are orch's choice
    cfg = build_config(spec, 2, {"http": 41000, "admin": 41001}, 7)
    assert cfg.container_ports == {"http": 80, "admin": 41001}
    assert cfg.env["A"] == "80" and cfg.env["PORT"] == "80" and cfg.env["PORT_ADMIN"] == "41001"
    body = create_body(cfg, prefix="infracore", owner="o1")
    host = body["HostConfig"]
    assert body["Cmd"] == ["httpd", "-f", "-p", "80"] and body["Entrypoint"] == ["/bin/env"]
    assert (body["WorkingDir"], body["User"], body["StopSignal"], body["StopTimeout"]) == (
        "/www",
        "1000:1000",
        "SIGINT",
        3,
    )
    assert host["Init"] is True and host["RestartPolicy"] == {"Name": "no"}
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41000"}],
        "41001/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41001"}],
    }
    assert host["Memory"] == host["MemorySwap"] == 64 << 20 and host["NanoCpus"] == 500_000_000
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "infracore-blog-data", "Target": "/data", "ReadOnly": False},
        {"Type": "bind", "Source": "/srv/site", "Target": "/www", "ReadOnly": True},
    ]
    assert body["Labels"]["infracore.instance"] == "blog-2" and body["Labels"]["infracore.release"] == "7"
    assert ports_from_labels(body["Labels"]) == ({"admin": 41001, "http": 41000}, {"admin": 41001, "http": 80})


def test_defaults_leave_the_image_alone() -> None:
    body = create_body(_cfg(), prefix="p", owner="o")
    assert "Cmd" not in body and "Entrypoint" not in body and "WorkingDir" not in body and "User" not in body
    assert "Memory" not in body["HostConfig"] and body["HostConfig"]["PortBindings"] == {}
    assert create_body(_cfg(entrypoint=()), prefix="p", owner="o")["Entrypoint"] == [""]  # [] clears it


def test_garbled_port_labels_give_nothing() -> None:
    assert ports_from_labels({"infracore.ports": "http=x:80"}) == ({}, {})
    assert ports_from_labels(labels(_cfg(), "o")) == ({}, {})


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"ExitCode": 0}, ExitStatus(code=0)),
        ({"ExitCode": 3}, ExitStatus(code=3)),
        ({"ExitCode": 137}, ExitStatus(signal=signal.SIGKILL)),
        ({"ExitCode": 143}, ExitStatus(signal=signal.SIGTERM)),
        ({"ExitCode": 137, "OOMKilled": True}, ExitStatus(signal=signal.SIGKILL, oom_killed=True)),
        ({"ExitCode": 255}, ExitStatus(code=255)),
        ({"Status": "dead"}, ExitStatus(note="exit status unknown (container state dead)")),
    ],
)
def test_exit_status_from_the_container_state(state: dict[str, object], expected: ExitStatus) -> None:
    assert exit_status(state) == expected


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_log_frames_keep_streams_apart_and_join_split_lines() -> None:
    raw = _frame(1, b"hel") + _frame(2, b"oops\n") + _frame(1, b"lo\nwor") + _frame(1, b"ld\n") + _frame(2, b"tail")
    for step in (1, 3, 7, len(raw)):  # fed in small pieces, as a socket delivers them
        frames = LogFrames()
        out = []
        for i in range(0, len(raw), step):
            out += frames.feed(raw[i : i + step])
        out += frames.flush()
        assert out == [("stderr", b"oops"), ("stdout", b"hello"), ("stdout", b"world"), ("stderr", b"tail")]


def test_log_frames_cut_endless_lines() -> None:
    frames = LogFrames(max_line=10)
    assert frames.feed(_frame(1, b"x" * 25)) == [("stdout", b"x" * 25)]
    assert frames.flush() == []


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=40)), max_size=20), st.integers(1, 50))
def test_log_frames_lose_nothing(chunks: list[tuple[int, bytes]], step: int) -> None:
    raw = b"".join(_frame(s, d) for s, d in chunks)
    frames = LogFrames(max_line=1 << 20)
    out = []
    for i in range(0, len(raw), step):
        out += frames.feed(raw[i : i + step])
    out += frames.flush()
    for stream, n in (("stdout", 1), ("stderr", 2)):
        *lines, last = b"".join(d for s, d in chunks if s == n).split(b"\n")
        assert [line for s, line in out if s == stream] == lines + ([last] if last else [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:/var/lib/app", Volume("volume", "data", "/var/lib/app")),
        ("/srv/site:/www:ro", Volume("bind", "/srv/site", "/www", True)),
        ("/srv/./site/:/www/:rw", Volume("bind", "/srv/site", "/www", False)),
    ],
)
def test_volume_syntax(text: str, expected: Volume) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("data", "is not SOURCE:TARGET"),
        ("data:www", "must be an absolute path"),
        ("data:/", "cannot replace the container's root"),
        ("./site:/www", "needs an absolute host path"),
        ("site/x:/www", "needs an absolute host path"),
        ("/a:/b:rx", "can only be ro or rw"),
        ("bad name!:/b", "is not a volume name"),
    ],
)
def test_volume_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_volume(text)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/", "whole file system"),
        ("/etc", "configuration and password files"),
        ("/etc/shadow", "lies inside /etc"),
        ("/var/run/docker.sock", "Docker socket"),
        ("/run", "contains /run/docker.sock"),
        ("/var", "contains /var/run/docker.sock"),
        ("/proc/1", "lies inside /proc"),
        ("/var/lib/infracore/state.db", "lies inside /var/lib/infracore"),
        ("/var/lib", "contains /var/lib/infracore"),
    ],
)
def test_host_mounts_refused(path: str, fragment: str) -> None:
    from orch.volumes import SENSITIVE

    problem = host_mount_problem(path, (*SENSITIVE, "/var/lib/infracore"))
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("path", ["/srv/site", "/home/ann/blog", "/var/lib/blog", "/opt/app/data"])
def test_ordinary_host_paths_are_fine(path: str) -> None:
    from orch.volumes import SENSITIVE

    assert host_mount_problem(path, (*SENSITIVE, "/var/lib/infracore")) is None
