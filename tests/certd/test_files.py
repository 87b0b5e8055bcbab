"""PEM pair files: modes, atomic replacement, and recovery after a crash at any step."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certd import files, pem

NOW = time.time()


@pytest.fixture(scope="module")
def pairs() -> list[tuple[bytes, bytes]]:
    return [pem.self_signed([f"p{i}.test"], NOW) for i in range(2)]


def _matches(d: Path, stem: str) -> bool:
    key = serialization.load_pem_private_key((d / f"{stem}.key").read_bytes(), None)
    return pem.key_matches(key, x509.load_pem_x509_certificate((d / f"{stem}.crt").read_bytes()))


def test_write_pair_modes_even_with_a_permissive_umask(tmp_path: Path, pairs) -> None:
    old = os.umask(0)
    try:
        crt, key = files.write_pair(tmp_path / "certs", "a.test", *pairs[0])
    finally:
        os.umask(old)
    assert (key.stat().st_mode & 0o777) == 0o600
    assert (crt.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / "certs").stat().st_mode & 0o777) == 0o700
    assert (crt.read_bytes(), key.read_bytes()) == pairs[0]
    inode = crt.stat().st_ino
    files.write_pair(tmp_path / "certs", "a.test", *pairs[1])
    assert crt.stat().st_ino != inode and (crt.read_bytes(), key.read_bytes()) == pairs[1]
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["a.test.crt", "a.test.key"]


@pytest.mark.parametrize(
    ("present", "expect_pair", "what"),
    [
        # crash while writing the key (.crt.new not created yet): old pair kept
        ({"key.new": 1}, 0, "dropped an unfinished key write"),
        # crash after both .new files, before the first rename: old pair kept
        ({"key.new": 1, "crt.new": 1}, 0, "dropped an unfinished write"),
        # crash between the two renames: key already new, cert finished from .crt.new
        ({"key": 1, "crt.new": 1}, 1, "finished an interrupted swap"),
    ],
)
def test_recover_each_crash_point(tmp_path: Path, pairs, present: dict[str, int], expect_pair: int, what: str) -> None:
    d = tmp_path / "certs"
    files.write_pair(d, "s.test", *pairs[0])
    cert_new, key_new = pairs[1]
    for suffix in present:
        data = key_new if suffix.startswith("key") else cert_new
        (d / f"s.test.{suffix}").write_bytes(data)
    done = files.recover(d)
    assert len(done) == 1 and what in done[0]
    assert ((d / "s.test.crt").read_bytes(), (d / "s.test.key").read_bytes()) == pairs[expect_pair]
    assert not list(d.glob("*.new"))


def test_a_killed_writer_always_leaves_a_matching_pair(tmp_path: Path, pairs) -> None:
    """A child process replaces the pair over and over; we SIGKILL it at random moments (so at every
    step of the protocol, over the runs), run recovery, and find a complete, matching pair each time."""
    d = tmp_path / "certs"
    files.write_pair(d, "k.test", *pairs[0])
    rng = random.Random(1234)
    seen_states: set[int] = set()
    for _ in range(25):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write pairs forever, saying when it has started
            try:
                os.close(r)
                os.write(w, b"x")
                i = 0
                while True:
                    files.write_pair(d, "k.test", *pairs[i % 2])
                    i += 1
            finally:
                os._exit(1)
        os.close(w)
        assert os.read(r, 1) == b"x"
        os.close(r)
        time.sleep(rng.uniform(0, 0.03))  # a random crash point, not a readiness wait
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen_states.add(len(list(d.glob("*.new"))))
        files.recover(d)
        assert _matches(d, "k.test")
        assert ((d / "k.test.crt").read_bytes(), (d / "k.test.key").read_bytes()) in pairs
        assert not list(d.glob("*.new"))
    assert seen_states, "the child never ran"
