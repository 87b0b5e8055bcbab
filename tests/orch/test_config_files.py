"""`config_files` stay inside the workdir: refused in the spec with the `path:` line, and refused by the
writer when a symlink on disk would lead the write elsewhere."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from orch._files import ConfigFileRefused, write_inside
from orch.spec import SpecError, config_path_problem, load_spec, validate_mapping


@pytest.mark.parametrize(
    ("path", "workdir", "ok"),
    [
        ("app.ini", "/srv/a", True),
        ("conf/app.ini", "/srv/a", True),
        ("./conf/../app.ini", "/srv/a", True),
        ("/srv/a/app.ini", "/srv/a", True),
        ("/srv/a/sub/../app.ini", "/srv/a", True),
        ("${installPath}/app.ini", "/srv/a", True),  # a variable is one opaque component here
        ("../app.ini", "/srv/a", False),
        ("conf/../../app.ini", "/srv/a", False),
        ("../../../../etc/cron.d/x", "/srv/a", False),
        ("/etc/passwd", "/srv/a", False),
        ("/srv/ab/app.ini", "/srv/a", False),  # a sibling sharing the prefix
        ("/srv/a", "/srv/a", False),  # the workdir itself is not a file
        (".", "/srv/a", False),
        ("/srv/a/../a2/x", "/srv/a", False),
        ("app.ini", None, False),  # no workdir: nothing to be inside of
        ("app\0.ini", "/srv/a", False),
    ],
)
def test_config_path_table(path, workdir, ok):
    assert (config_path_problem(path, workdir) is None) == ok


def test_escaping_path_is_a_spec_error_on_its_own_line():
    text = (
        "name: web\ncmd: ./run\nworkdir: /srv/web\nconfig_files:\n"
        "  - path: ok.ini\n    content: a\n"
        "  - path: ../../etc/cron.d/evil\n    content: '* * * * * root sh -c id'\n"
        "  - path: /etc/ssh/sshd_config\n    content: x\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(text, "web.yaml")
    got = [(p.line, p.field) for p in info.value.problems]
    assert got == [(7, "config_files[1].path"), (9, "config_files[2].path")]
    assert "outside the workdir /srv/web" in str(info.value.problems[1])
    with pytest.raises(SpecError):  # the API's JSON form too
        validate_mapping(
            {"name": "web", "cmd": "x", "workdir": "/srv/web", "config_files": [{"path": "../x", "content": ""}]}
        )


def test_writer_writes_inside_with_mode(tmp_path: Path):
    written = write_inside(str(tmp_path), "conf/deep/app.ini", "x=1\n", 0o600)
    assert Path(written) == tmp_path / "conf/deep/app.ini"
    assert (tmp_path / "conf/deep/app.ini").read_text() == "x=1\n"
    assert (tmp_path / "conf/deep/app.ini").stat().st_mode & 0o777 == 0o600


def test_writer_refuses_symlinked_directory_and_file(tmp_path: Path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "conf").symlink_to(outside)
    with pytest.raises(ConfigFileRefused, match="symlink"):
        write_inside(str(work), "conf/app.ini", "x", 0o644)
    victim = outside / "victim"
    victim.write_text("keep")
    (work / "app.ini").symlink_to(victim)
    # A link at the file's own name is replaced (rename), never written through.
    write_inside(str(work), "app.ini", "overwritten", 0o644)
    assert not (work / "app.ini").is_symlink() and (work / "app.ini").read_text() == "overwritten"
    assert victim.read_text() == "keep"
    assert list(outside.iterdir()) == [victim]
    with pytest.raises(ConfigFileRefused, match="outside"):
        write_inside(str(work), "../outside/x", "x", 0o644)
    assert os.listdir(outside) == ["victim"]


_AS_NOBODY = """
import os, sys
from orch._files import read_inside, write_inside  # first: the interpreter's own files may be root's only
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
work = sys.argv[1]
print(write_inside(work, "conf/app.ini", "x = 1\\n", 0o644))
print(read_inside(work, "conf/app.ini"), end="")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_ancestor_with_search_permission_only_is_enough(tmp_path: Path):
    """A workdir under a directory the platform's user may traverse but not list (a home at 0711): the
    walk from `/` needs only search permission on the way, as a plain open of the path would. Run as
    uid 65534 in a child process."""
    import shutil
    import subprocess
    import sys
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="infracore-0711-", dir="/tmp"))
    try:
        os.chmod(top, 0o711)  # root's, searchable, not readable by others
        work = top / "work"
        work.mkdir()
        os.chown(work, 65534, 65534)
        repo = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(work)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [str(work / "conf/app.ini"), "x = 1"]
        st = (work / "conf/app.ini").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (65534, 0o644)
    finally:
        shutil.rmtree(top)


async def test_systemd_runtime_on_this_machine_writes_config_files_without_following_symlinks(tmp_path: Path):
    """The systemd runtime on this machine (no command prefix) writes config files like native services:
    a directory in the workdir swapped for a symlink to elsewhere is refused, nothing is written there.
    (`systemctl` is `true` here: only the files matter.)"""
    from orch.logfiles import FileLogSink
    from orch.runtime import InstanceConfig, RuntimeError_
    from orch.systemd import SystemdRuntime

    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    rt = SystemdRuntime(
        FileLogSink(tmp_path / "logs"),
        unit_dir=str(tmp_path / "unit"),
        systemctl=("true",),
    )
    config = InstanceConfig("svc", 1, argv=("/bin/sleep", "60"), workdir=str(work))
    ok = dataclasses.replace(config, config_files=(("conf/app.ini", "x = 1\n", 0o640),))
    await rt.create(ok)
    assert (work / "conf/app.ini").read_text() == "x = 1\n"
    assert (work / "conf/app.ini").stat().st_mode & 0o777 == 0o640
    (work / "conf/app.ini").unlink()
    (work / "conf").rmdir()
    (work / "conf").symlink_to(outside)
    with pytest.raises(RuntimeError_, match="symlink"):
        await rt.create(ok)
    assert not list(outside.iterdir())
    await rt.close()
