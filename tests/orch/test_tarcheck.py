"""The archive member rules (orch/_tarcheck.py), as tables: no tar files, no I/O."""

from __future__ import annotations

import pytest

from orch._tarcheck import Member, TarChecker, TarLimits, TarRejected, normalise


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", "a"),
        ("./a/b", "a/b"),
        ("a//b/", "a/b"),
        ("./", ""),
        ("a/./b", "a/b"),
    ],
)
def test_normalise_accepts(name, expected):
    assert normalise(name) == expected


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("/etc/x", "absolute_path"),
        ("../x", "parent_path"),
        ("a/../../x", "parent_path"),
        ("a/..", "parent_path"),
        ("", "bad_name"),
        ("a\x00b", "bad_name"),
        ("C:/x", "absolute_path"),
        ("/".join(["d"] * 100), "bad_name"),
    ],
)
def test_normalise_refuses(name, rule):
    with pytest.raises(TarRejected) as e:
        normalise(name)
    assert e.value.rule == rule


def _run(members, limits=None):
    c = TarChecker(limits or TarLimits())
    return [c.check(m) for m in members]


GOOD = [
    [Member("./", "dir"), Member("./bin/", "dir"), Member("./bin/app", "file", 10)],
    [Member("app", "file", 1), Member("current", "symlink", linkname="app")],
    [Member("lib/a.so.1", "file", 1), Member("lib/a.so", "symlink", linkname="a.so.1")],
    [Member("web/static/x", "file"), Member("web/static/up", "symlink", linkname="../../web")],
    [Member("a", "file", 3), Member("b", "hardlink", linkname="a")],
    [Member("a", "file", 3), Member("d/b", "hardlink", linkname="./a")],
    [Member("d", "dir"), Member("d", "dir")],  # a dir declared twice is harmless
]


@pytest.mark.parametrize("members", GOOD)
def test_good_archives_pass(members):
    _run(members)


BAD = [
    ([Member("../x", "file")], "parent_path"),
    ([Member("/etc/x", "file")], "absolute_path"),
    ([Member("l", "symlink", linkname="/etc")], "symlink_outside"),
    ([Member("l", "symlink", linkname="..")], "symlink_outside"),
    ([Member("d/l", "symlink", linkname="../../x")], "symlink_outside"),
    ([Member("l", "symlink", linkname="a/../..")], "symlink_outside"),
    # `a -> .` then `b -> a/..` would really resolve to the parent of the release dir
    ([Member("a", "symlink", linkname="."), Member("b", "symlink", linkname="a/..")], "symlink_outside"),
    ([Member("l", "symlink", linkname="")], "symlink_outside"),
    ([Member("h", "hardlink", linkname="/etc/passwd")], "hardlink_outside"),
    ([Member("h", "hardlink", linkname="../x")], "hardlink_outside"),
    ([Member("h", "hardlink", linkname="later")], "hardlink_outside"),
    ([Member("l", "symlink", linkname="x"), Member("h", "hardlink", linkname="l")], "hardlink_outside"),
    ([Member("dev", "device")], "device_file"),
    ([Member("p", "fifo")], "fifo_file"),
    ([Member("s", "other")], "unsupported_type"),
    # writing through a symlink, or replacing one
    ([Member("l", "symlink", linkname="d"), Member("l/x", "file")], "through_symlink"),
    ([Member("l", "symlink", linkname="d"), Member("l", "file")], "duplicate"),
    ([Member("l", "symlink", linkname="d"), Member("l", "dir")], "duplicate"),
    ([Member("f", "file"), Member("f", "file")], "duplicate"),
    ([Member("f", "file"), Member("f/x", "file")], "duplicate"),
    ([Member("d/x", "file"), Member("d", "file")], "duplicate"),
    ([Member("./", "file")], "bad_name"),
]


@pytest.mark.parametrize(("members", "rule"), BAD)
def test_bad_archives_are_refused(members, rule):
    with pytest.raises(TarRejected) as e:
        _run(members)
    assert e.value.rule == rule


def test_limits_on_members_and_size():
    with pytest.raises(TarRejected) as e:
        _run([Member(f"f{i}", "file") for i in range(4)], TarLimits(max_members=3))
    assert e.value.rule == "too_many_members" and e.value.member == "f3"
    with pytest.raises(TarRejected) as e:
        _run([Member("a", "file", 60), Member("b", "file", 41)], TarLimits(max_unpacked_bytes=100))
    assert e.value.rule == "too_large" and e.value.member == "b"
    _run([Member("a", "file", 60), Member("b", "file", 40)], TarLimits(max_unpacked_bytes=100))


# --- property: whatever the rules accept stays inside, on a real file system -----------------------

_PARTS = ["a", "b", "..", "."]


def _paths(max_len: int = 3):
    from hypothesis import strategies as st

    return st.lists(st.sampled_from(_PARTS), min_size=1, max_size=max_len).map("/".join)


def _members():
    from hypothesis import strategies as st

    member = st.one_of(
        st.builds(lambda p: ("file", p, ""), _paths()),
        st.builds(lambda p: ("dir", p, ""), _paths()),
        st.builds(lambda p, t: ("symlink", p, t), _paths(2), _paths(4)),
        st.builds(lambda p, t: ("hardlink", p, t), _paths(), _paths()),
    )
    return st.lists(member, min_size=1, max_size=8)


def test_accepted_archives_never_reach_outside(tmp_path_factory):
    """Random member lists (names and link targets made of a, b, c, . and ..): every archive the rules
    accept, really unpacked, writes only inside the release dir and leaves only links resolving inside."""
    import os

    from hypothesis import HealthCheck, example, given, settings

    from orch import _unpack
    from tests.orch.tarfiles import build

    base = tmp_path_factory.mktemp("prop")
    counter = iter(range(10**6))

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_members())
    @example([("symlink", "a", "."), ("symlink", "b", "a/.."), ("file", "b/x", "")])
    @example([("dir", "a", ""), ("symlink", "a/l", ".."), ("symlink", "m", "a/l/..")])
    def check(members):
        n = next(counter)
        sandbox = base / f"s{n}"
        (sandbox / "rel").mkdir(parents=True)
        entries = [(p, "file", b"x") if k == "file" else (p, k) if k == "dir" else (p, k, t) for k, p, t in members]
        tgz = sandbox / "a.tgz"
        tgz.write_bytes(build(entries))
        dest = sandbox / "rel" / "v1"
        try:
            _unpack.unpack(tgz, "tar.gz", dest, TarLimits(), "artifact")
        except TarRejected:
            assert not dest.exists()
            assert sorted(os.listdir(sandbox / "rel")) == []
        else:
            root = os.path.realpath(dest)
            for dirpath, dirnames, filenames in os.walk(dest):
                for name in dirnames + filenames:
                    p = os.path.join(dirpath, name)
                    if os.path.islink(p):
                        real = os.path.realpath(p)
                        assert real == root or real.startswith(root + "/"), (members, p, real)
        assert sorted(os.listdir(sandbox)) == ["a.tgz", "rel"]
        assert sorted(os.listdir(sandbox / "rel")) in ([], ["v1"])

    check()
