"""A config file's template is read from the release dir (`read_inside`): what an artifact or a spec
author could put there instead of a plain file — links out, `..`, absolute paths, a FIFO, a device, a
directory, a huge file, a file swapped while it is read — is refused with a precise error, never followed,
never waited on."""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orch._files import ConfigFileRefused, read_inside
from orch.spec import SpecError
from tests.orch.test_supervisor import Harness, until, web_spec

SECRET = "outside secret\n"


@pytest.fixture
def rel(tmp_path: Path) -> Path:
    (tmp_path / "outside.txt").write_text(SECRET)
    d = tmp_path / "release"
    (d / "conf").mkdir(parents=True)
    (d / "conf" / "app.tmpl").write_text("x=${version}\n")
    return d


def _read(rel: Path, path: str, limit: int = 1024 * 1024) -> str:
    """`read_inside` in a thread with a deadline: a read that blocks is a failure, not a hung test."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(_catch(rel, path, limit)), daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():
        for p in rel.rglob("*"):  # unblock the open of a FIFO so the thread ends
            if p.is_fifo():
                fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
        pytest.fail(f"reading {path!r} blocked")
    if isinstance(out[0], BaseException):
        raise out[0]
    return str(out[0])


def _catch(rel: Path, path: str, limit: int) -> object:
    try:
        return read_inside(str(rel), path, limit)
    except BaseException as e:
        return e


def test_a_plain_template_is_read(rel: Path) -> None:
    assert _read(rel, "conf/app.tmpl") == "x=${version}\n"
    assert _read(rel, str(rel / "conf" / "app.tmpl")) == "x=${version}\n"  # absolute, inside
    assert _read(rel, "conf/../conf/app.tmpl") == "x=${version}\n"


@pytest.mark.parametrize(
    "path", ["../outside.txt", "conf/../../outside.txt", "/etc/passwd", "", ".", "conf/..", "/", "//etc/passwd"]
)
def test_paths_leaving_the_release_dir_are_refused(rel: Path, path: str) -> None:
    with pytest.raises(ConfigFileRefused, match="outside"):
        _read(rel, path)


def test_symlinks_out_are_never_followed(rel: Path, tmp_path: Path) -> None:
    (rel / "link.tmpl").symlink_to(tmp_path / "outside.txt")
    (rel / "rel-link.tmpl").symlink_to("../outside.txt")
    (rel / "in-link.tmpl").symlink_to("conf/app.tmpl")  # even inside: a link is not a template
    (rel / "dirlink").symlink_to(tmp_path)
    for path in ("link.tmpl", "rel-link.tmpl", "in-link.tmpl"):
        with pytest.raises(ConfigFileRefused, match="symlink"):
            _read(rel, path)
    with pytest.raises(ConfigFileRefused, match="symlink or not a directory"):
        _read(rel, "dirlink/outside.txt")


def test_a_fifo_a_socket_and_a_directory_are_refused_without_waiting(rel: Path) -> None:
    os.mkfifo(rel / "fifo.tmpl")
    t0 = time.monotonic()
    with pytest.raises(ConfigFileRefused, match="not a regular file"):
        _read(rel, "fifo.tmpl")  # before: open() waited for a writer, forever
    assert time.monotonic() - t0 < 2
    with pytest.raises(ConfigFileRefused, match="not a regular file"):
        _read(rel, "conf")  # before: IsADirectoryError, not a refusal (a 500)
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(rel / "sock.tmpl"))
        with pytest.raises(ConfigFileRefused):
            _read(rel, "sock.tmpl")


def test_a_device_is_refused(rel: Path) -> None:
    try:
        os.mknod(rel / "zero.tmpl", 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(ConfigFileRefused, match=r"not a regular file|cannot be read"):
        _read(rel, "zero.tmpl")


def test_a_huge_template_is_refused_without_reading_it(rel: Path) -> None:
    with open(rel / "huge.tmpl", "wb") as f:
        f.truncate(8 * 1024**3)  # sparse: 8 GiB by its size
    t0 = time.monotonic()
    with pytest.raises(ConfigFileRefused, match="larger than 1048576 bytes"):
        _read(rel, "huge.tmpl")
    assert time.monotonic() - t0 < 2
    (rel / "edge.tmpl").write_bytes(b"y" * 1024)
    assert len(_read(rel, "edge.tmpl", limit=1024)) == 1024
    with pytest.raises(ConfigFileRefused, match="larger"):
        _read(rel, "edge.tmpl", limit=1023)
    (rel / "bin.tmpl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigFileRefused, match="not UTF-8"):
        _read(rel, "bin.tmpl")


def test_a_file_swapped_while_it_is_read_never_yields_what_lies_outside(rel: Path, tmp_path: Path) -> None:
    """A thread keeps swapping the template (and its directory) for a symlink out, a FIFO, and back; every
    read is the plain file's text or a refusal — never the outside file, never a hang."""
    good = rel / "good.tmpl"
    good.write_text("good\n")
    evil = rel / "evil.tmpl"
    evil.symlink_to(tmp_path / "outside.txt")
    os.mkfifo(rel / "fifo")
    outside_dir = tmp_path / "outdir"
    (outside_dir).mkdir()
    (outside_dir / "app.tmpl").write_text(SECRET)
    (rel / "evil-dir").symlink_to(outside_dir)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for src in ("evil.tmpl", "fifo", "good.tmpl"):
                tmp = rel / f".swap-{src}"
                os.link(rel / src, tmp, follow_symlinks=False)
                os.replace(tmp, rel / "t.tmpl")
            tmp = rel / ".swap-dir"
            os.symlink("evil-dir", tmp)
            os.replace(tmp, rel / "sw")  # `sw` is a symlink to a dir outside ...
            os.unlink(rel / "sw")
            os.mkdir(rel / ".swd")  # ... or a real dir inside
            (rel / ".swd" / "app.tmpl").write_text("good\n")
            os.rename(rel / ".swd", rel / "sw")
            for p in (rel / "sw").iterdir():
                p.unlink()
            os.rmdir(rel / "sw")

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for path in ("t.tmpl", "sw/app.tmpl"):
                try:
                    seen.add(_read(rel, path))
                except ConfigFileRefused:
                    seen.add("refused")
    finally:
        stop.set()
        t.join(5)
    assert SECRET not in seen and seen <= {"good\n", "refused"}, seen
    assert "refused" in seen


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    await harness.close()


async def test_a_deploy_with_a_hostile_template_is_refused_precisely(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    work = tmp_path / "work"
    (work / "conf").mkdir(parents=True)
    os.mkfifo(work / "fifo.tmpl")
    for template, why in (
        ("conf", "not a regular file"),
        ("fifo.tmpl", "not a regular file"),
        ("../outside", "without '..'"),
        ("/etc/passwd", "relative to the workdir"),
    ):
        with pytest.raises(SpecError, match=re.escape(why)) as e:
            await o.deploy(
                "web",
                version="v2",
                actor="ci",
                overrides={"workdir": str(work), "config_files": [{"path": "app.ini", "template": template}]},
            )
        assert "config_files[0]" in str(e.value)
    assert o.describe("web")["version"] == 1


def test_a_workdir_component_swapped_for_a_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    """The workdir's own path, as the caller resolved (realpath) and checked it: a component swapped for a
    link afterwards (here: `site/current` → a directory outside holding the same names) is refused for
    reads and writes alike, not followed."""
    from orch._files import write_inside

    outside = tmp_path / "outside"
    (outside / "conf").mkdir(parents=True)
    (outside / "conf" / "app.tmpl").write_text(SECRET)
    work = tmp_path / "site" / "current"
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "app.tmpl").write_text("x=1\n")
    checked = os.path.realpath(work)
    assert read_inside(checked, "conf/app.tmpl") == "x=1\n"
    # The swap, after the check: the workdir itself becomes a link to the outside directory.
    work.rename(tmp_path / "site" / "old")
    work.symlink_to(outside)
    with pytest.raises(ConfigFileRefused, match=r"workdir .*current is a symlink or not a directory"):
        read_inside(checked, "conf/app.tmpl")
    with pytest.raises(ConfigFileRefused, match=r"current is a symlink"):
        write_inside(checked, "conf/app.ini", "written\n", 0o644)
    assert not (outside / "conf" / "app.ini").exists()
    # A link higher up the path (the workdir's parent) is refused the same way.
    work.unlink()
    (tmp_path / "site").rename(tmp_path / "site-real")
    (tmp_path / "site").symlink_to(tmp_path / "site-real")
    with pytest.raises(ConfigFileRefused, match=r"site is a symlink"):
        read_inside(checked, "conf/app.tmpl")


def test_a_workdir_swapped_while_templates_are_read_never_yields_what_lies_outside(tmp_path: Path) -> None:
    """A thread keeps swapping the (already resolved) workdir for a link to a directory holding a secret
    at the same name: every read is the real template's text or a refusal."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "app.tmpl").write_text(SECRET)
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.tmpl").write_text("x=1\n")
    real = tmp_path / "work-real"
    link = tmp_path / "work-link"
    link.symlink_to(outside)
    checked = os.path.realpath(work)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(work, real)
            os.rename(link, work)  # now a link out
            os.rename(work, link)
            os.rename(real, work)  # the real one back

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < deadline and n < 20000:
            n += 1
            try:
                seen.add(read_inside(checked, "app.tmpl"))
            except ConfigFileRefused:
                seen.add("refused")
            except OSError:
                seen.add("gone")  # the workdir mid-rename
    finally:
        stop.set()
        t.join(5)
    assert SECRET not in seen, seen
