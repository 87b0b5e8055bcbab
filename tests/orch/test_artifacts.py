"""The artifact store in process, with a real state DB and real tar files: upload checks, dedupe,
install (idempotent, atomic), the attacks each refused with nothing written, and prune."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import BadRequest, Conflict, PayloadTooLarge
from core.store import Store
from orch import _unpack
from orch._tarcheck import TarLimits, TarRejected
from orch.artifacts import ArtifactStore
from tests.orch import tarfiles


async def _chunks(data: bytes, size: int = 7777) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
async def arts(tmp_path: Path) -> AsyncIterator[ArtifactStore]:
    store = Store(tmp_path / "data" / "state.db")
    (tmp_path / "data").mkdir()
    await store.open()
    a = ArtifactStore(
        tmp_path / "data",
        store,
        max_bytes=4 * 1024 * 1024,
        limits=TarLimits(max_members=200, max_unpacked_bytes=8 * 1024 * 1024),
        keep_count=3,
    )
    await a.start()
    yield a
    await a.stop(5)
    await store.close()


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"-> {os.readlink(p)}"
            else:
                out[rel] = "dir" if p.is_dir() else p.read_bytes().decode(errors="replace")
    return out


async def test_upload_install_and_dedupe(arts: ArtifactStore):
    data = tarfiles.app("v1")
    sha = hashlib.sha256(data).hexdigest()
    rec = await arts.receive(_chunks(data), expected_sha256=sha.upper(), filename="app.tgz", service="web", actor="ci")
    assert rec["id"] == sha and rec["kind"] == "tar.gz" and rec["size"] == len(data)
    assert rec["services"] == ["web"] and rec["deduplicated"] is False and rec["members"] == 6
    again = await arts.receive(_chunks(data, 100), service="api", content_length=len(data))
    assert again["id"] == sha and again["deduplicated"] is True and again["services"] == ["api", "web"]
    assert [a["id"] for a in await arts.list()] == [sha]
    assert [a["id"] for a in await arts.list("api")] == [sha] and await arts.list("other") == []
    assert list(arts.tmp.iterdir()) == []  # the second copy was not kept

    path = await arts.install(sha, "web", "1.0.0")
    assert path == arts.releases / "web" / "1.0.0"
    tree = _tree(path)
    assert tree["bin/app.py"] == "print('hello from v1')\n" and tree["current.yaml"] == "-> config/app.yaml"
    assert os.stat(path / "bin/app.py").st_ino == os.stat(path / "bin/app-copy.py").st_ino
    assert os.stat(path / "bin/app.py").st_mode & 0o777 == 0o755
    # Idempotent: the same again returns the same dir untouched; another artifact for it is refused.
    (path / "marker").write_text("x")
    assert await arts.install(sha, "web", "1.0.0") == path and (path / "marker").exists()
    other = await arts.receive(_chunks(tarfiles.app("v2")))
    with pytest.raises(Conflict):
        await arts.install(other["id"], "web", "1.0.0")
    assert [i["version"] for i in await arts.installs("web")] == ["1.0.0"]


async def test_single_file_and_kind_by_content(arts: ArtifactStore):
    binary = b"\x7fELF" + os.urandom(3000)
    rec = await arts.receive(_chunks(binary), filename="backend-app")
    assert rec["kind"] == "file"
    path = await arts.install(rec["id"], "api", "7")
    assert (path / "backend-app").read_bytes() == binary and os.access(path / "backend-app", os.X_OK)
    # A tar.gz named like a plain file is still unpacked; a gzip that holds no tar is a single file.
    tgz = await arts.receive(_chunks(tarfiles.app("v3")), filename="payload.bin")
    assert tgz["kind"] == "tar.gz"
    import gzip

    gz = await arts.receive(_chunks(gzip.compress(b"just text\n" * 100)), filename="notes.tgz")
    assert gz["kind"] == "file"
    plain = await arts.receive(_chunks(tarfiles.build([("a.txt", "file", b"a")], gz=False)))
    assert plain["kind"] == "tar"
    assert (await arts.install(plain["id"], "api", "8") / "a.txt").read_text() == "a"


async def test_sha_mismatch_and_size_limit_keep_nothing(arts: ArtifactStore):
    data = tarfiles.app("v1")
    with pytest.raises(BadRequest) as e:
        await arts.receive(_chunks(data), expected_sha256="0" * 64)
    assert e.value.code == "sha256_mismatch" and e.value.details["actual"] == hashlib.sha256(data).hexdigest()
    with pytest.raises(BadRequest):
        await arts.receive(_chunks(data), expected_sha256="not-a-sha")
    big = os.urandom(4 * 1024 * 1024 + 1)
    with pytest.raises(PayloadTooLarge):
        await arts.receive(_chunks(big, 256 * 1024))  # no length given: found while streaming
    with pytest.raises(PayloadTooLarge):
        await arts.receive(_chunks(b"x"), content_length=len(big))  # refused before reading
    assert await arts.list() == [] and list(arts.tmp.iterdir()) == []
    assert [p for p in arts.blobs.rglob("*") if p.is_file()] == []


async def test_attacks_are_refused_at_upload_and_at_install(arts: ArtifactStore, tmp_path: Path):
    before = _tree(tmp_path)
    for name, (data, rule, must_not_exist) in tarfiles.attacks(tmp_path).items():
        with pytest.raises(BadRequest) as e:
            await arts.receive(_chunks(data), service="web")
        assert e.value.code == "archive_refused" and e.value.details["rule"] == rule, name
        # The unpacker refuses it on its own too (an artifact stored before a rule existed, say).
        blob = tmp_path / f"{name}.tgz"
        blob.write_bytes(data)
        dest = arts.releases / "web" / name
        with pytest.raises(TarRejected) as e2:
            _unpack.unpack(blob, "tar.gz", dest, arts.limits, "artifact")
        assert e2.value.rule == rule, name
        blob.unlink()
        for p in must_not_exist:
            assert not os.path.lexists(p), (name, p)
        assert not dest.exists() and list((arts.releases / "web").iterdir()) == [], name
    assert await arts.list() == []
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("data/")} == {
        k: v for k, v in before.items() if not k.startswith("data/")
    }


async def test_bombs_are_refused(arts: ArtifactStore, tmp_path: Path):
    bomb = tarfiles.gzip_bomb(64 * 1024 * 1024)  # 64 MiB of zeros, limit 8 MiB
    assert len(bomb) < arts.max_bytes
    with pytest.raises(BadRequest) as e:
        await arts.receive(_chunks(bomb))
    assert e.value.details["rule"] == "too_large"
    many = tarfiles.build([(f"f{i}", "file", b"") for i in range(201)])
    with pytest.raises(BadRequest) as e:
        await arts.receive(_chunks(many))
    assert e.value.details["rule"] == "too_many_members"
    # A pax header of 2 MiB is refused before it is read into memory.
    fat = tarfiles.build([("a", "file", b"a")], pax={"comment": "x" * (2 * 1024 * 1024)})
    big_arts = ArtifactStore(tmp_path / "data", arts.store, max_bytes=64 * 1024 * 1024, limits=arts.limits)
    await big_arts.start()
    with pytest.raises(BadRequest) as e:
        await big_arts.receive(_chunks(fat, 1 << 20))
    assert e.value.details["rule"] == "bad_header"
    await big_arts.stop(5)
    # A truncated archive is a clear error, not a 500.
    with pytest.raises(BadRequest) as e:
        await arts.receive(_chunks(tarfiles.app("v1")[:-40]))
    assert e.value.code == "archive_invalid"
    assert await arts.list() == [] and list(arts.tmp.iterdir()) == []


async def test_absolute_attack_really_is_absolute(tmp_path: Path):
    data, _rule, _ = tarfiles.attacks(tmp_path)["absolute"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames()[0].startswith("/etc/")  # the test would prove nothing if tarfile stripped it


async def test_prune_keeps_newest_and_the_named(arts: ArtifactStore):
    ids = []
    for v in range(1, 7):
        rec = await arts.receive(_chunks(tarfiles.app(f"v{v}")))
        ids.append(rec["id"])
        await arts.install(rec["id"], "web", f"{v}.0")
    (arts.releases / "web" / ".staging-9.0-dead").mkdir()  # left by a crash
    removed = await arts.prune("web", keep={"1.0"})
    assert sorted(removed) == ["2.0", "3.0"]
    assert sorted(p.name for p in (arts.releases / "web").iterdir()) == ["1.0", "4.0", "5.0", "6.0"]
    assert [i["version"] for i in await arts.installs("web")] == ["6.0", "5.0", "4.0", "1.0"]
    assert await arts.prune("web", keep={"1.0"}) == []
    # A pruned version can be installed again (its artifact is still stored).
    assert (await arts.install(ids[1], "web", "2.0") / "bin/app.py").exists()


async def test_concurrent_installs_of_one_version_unpack_once(arts: ArtifactStore):
    import asyncio

    rec = await arts.receive(_chunks(tarfiles.app("v1")))
    paths = await asyncio.gather(*(arts.install(rec["id"], "web", "1") for _ in range(4)))
    assert len(set(paths)) == 1 and (paths[0] / "bin/app.py").exists()
    assert sorted(p.name for p in (arts.releases / "web").iterdir()) == ["1"]


async def test_install_repairs_a_claim_left_by_a_crash(arts: ArtifactStore):
    rec = await arts.receive(_chunks(tarfiles.app("v1")))
    await arts.store.execute(
        "INSERT INTO artifact_installs (service, version, artifact_id, installed_at) VALUES ('web', '1', ?, 0)",
        (rec["id"],),
    )
    path = await arts.install(rec["id"], "web", "1")
    assert (path / "bin/app.py").exists()


async def test_bad_names(arts: ArtifactStore):
    rec = await arts.receive(_chunks(b"x"))
    for service, version in (("web", "../x"), ("web", ".hidden"), ("../web", "1"), ("Web", "1"), ("web", "")):
        with pytest.raises(BadRequest):
            await arts.install(rec["id"], service, version)
    with pytest.raises(BadRequest):
        await arts.receive(_chunks(b"x"), filename="../evil")


async def test_stop_ends_an_install_under_way_and_the_next_install_redoes_it(tmp_path: Path):
    """An install blocked in its unpack (the blob swapped for a FIFO nobody writes yet) when the store stops:
    `stop` cancels and awaits it (no task outlives the store), the caller gets a precise 503, and after a
    restart the same install cleans whatever the cut-short unpack left and unpacks again."""
    import asyncio

    from core.errors import Unavailable

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = Store(data_dir / "state.db")
    await store.open()
    limits = TarLimits(max_members=200, max_unpacked_bytes=8 * 1024 * 1024)
    a = ArtifactStore(data_dir, store, max_bytes=4 * 1024 * 1024, limits=limits)
    await a.start()
    data = tarfiles.app("v1")
    rec = await a.receive(_chunks(data))
    blob = a.blob_path(rec["id"])
    blob.unlink()
    os.mkfifo(blob)
    installing = asyncio.ensure_future(a.install(rec["id"], "web", "1"))
    writer: asyncio.Future[None] | None = None
    try:
        for _ in range(400):  # the unpack is blocked in its worker, the claim recorded
            claimed = await store.fetchone("SELECT 1 FROM artifact_installs WHERE service = 'web'")
            if claimed and a._pool.in_use == 1:
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("the install never reached its unpack")
        await a.stop(0.5)
        owned = [t for t in asyncio.all_tasks() if "install:web:1" in t.get_name() or t is installing]
        assert installing.done() and not [t for t in owned if not t.done()], owned
        with pytest.raises(Unavailable, match="install of web version 1 was stopped"):
            installing.result()
        assert await store.fetchone("SELECT 1 FROM artifact_installs WHERE service = 'web'") is None
    finally:

        def feed() -> None:  # let the blocked worker end (it unpacks into place, or fails)
            with open(blob, "wb") as f:
                f.write(data)

        writer = asyncio.ensure_future(asyncio.to_thread(feed))
        await asyncio.wait_for(writer, 10)
        installing.cancel()
    for _ in range(400):
        if a._pool.in_use == 0:
            break
        await asyncio.sleep(0.025)
    blob.unlink()
    blob.write_bytes(data)
    # The next start: whatever the worker left (a release dir with no record, or nothing) gives way to a
    # whole install.
    b = ArtifactStore(data_dir, store, max_bytes=4 * 1024 * 1024, limits=limits)
    await b.start()
    try:
        path = await b.install(rec["id"], "web", "1")
        assert _tree(path)["bin/app.py"] == "print('hello from v1')\n"
        assert sorted(p.name for p in (b.releases / "web").iterdir() if not p.name.startswith(".staging-")) == ["1"]
    finally:
        await b.stop(5)
        await store.close()
