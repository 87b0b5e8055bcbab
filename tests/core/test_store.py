import asyncio
import sqlite3

import pytest

from core.errors import StartupError
from core.store import Migration, Store

M1 = Migration(1, "things", "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);")
M2 = Migration(2, "things.color", "ALTER TABLE things ADD COLUMN color TEXT;")


async def test_wal_mode_and_migrations_apply_once(tmp_path):
    s = Store(tmp_path / "a.db")
    await s.open()
    assert await s.migrate("demo", [M1]) == 1
    assert tuple(await s.fetchone("PRAGMA journal_mode") or ()) == ("wal",)
    assert await s.migrate("demo", [M1, M2]) == 2
    assert await s.migrate("demo", [M1, M2]) == 2  # nothing pending: a no-op
    rows = await s.fetchall("SELECT version, name FROM schema_migrations WHERE component = 'demo' ORDER BY version")
    assert [(r[0], r[1]) for r in rows] == [(1, "things"), (2, "things.color")]
    await s.close()


async def test_refuses_a_database_from_a_newer_release(tmp_path):
    s = Store(tmp_path / "a.db")
    await s.open()
    await s.migrate("demo", [M1, M2])
    with pytest.raises(StartupError, match="newer than this release knows"):
        await s.migrate("demo", [M1])
    await s.close()


async def test_failed_migration_rolls_back_and_says_which(tmp_path):
    s = Store(tmp_path / "a.db")
    await s.open()
    bad = Migration(2, "broken", "CREATE TABLE half (x INT); CREATE TABLE oops (;")
    with pytest.raises(StartupError, match=r"demo migration 2 \(broken\) failed"):
        await s.migrate("demo", [M1, bad])
    assert await s.fetchone("SELECT name FROM sqlite_master WHERE name = 'half'") is None
    assert await s.migrate("demo", [M1]) == 1  # version 1 stayed applied
    await s.close()


async def test_migration_versions_must_be_contiguous(tmp_path):
    s = Store(tmp_path / "a.db")
    await s.open()
    with pytest.raises(ValueError, match="without gaps"):
        await s.migrate("demo", [M2])
    await s.close()


async def test_transaction_rolls_back_on_error_and_readers_see_commits(tmp_path):
    s = Store(tmp_path / "a.db")
    await s.open()
    await s.migrate("demo", [M1])
    with pytest.raises(sqlite3.IntegrityError):
        async with s.transaction() as db:
            await db.execute("INSERT INTO things (name) VALUES ('a')")
            await db.execute("INSERT INTO things (name) VALUES ('a')")  # unique violation
    assert tuple(await s.fetchone("SELECT COUNT(*) FROM things") or ()) == (0,)
    cur = await s.execute("INSERT INTO things (name) VALUES (?)", ("b",))
    assert cur.lastrowid == 1
    assert [r["name"] for r in await s.fetchall("SELECT name FROM things")] == ["b"]
    assert await s.integrity_check() == "ok"
    await s.close()


async def test_garbage_file_is_a_clear_startup_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    s = Store(path)
    with pytest.raises(StartupError, match="cannot open database"):
        await s.open()
        await s.migrate("demo", [M1])
    assert path.read_bytes().startswith(b"this is not a database")  # left as it was, for the user to inspect


async def test_an_upgrade_backs_the_database_up_first_and_a_fresh_one_is_not_copied(tmp_path):
    old = Store(tmp_path / "state.db")
    await old.open()
    await old.migrate("demo", [M1])
    await old.migrate("zeta", [Migration(1, "z", "CREATE TABLE z (id INTEGER PRIMARY KEY);")])
    assert old.upgrade_backup is None  # a fresh database, however many components it starts: nothing to keep
    await old.execute("INSERT INTO things (name) VALUES ('kept')")
    await old.close()

    new = Store(tmp_path / "state.db")  # the next release, with a second migration and a new component
    await new.open()
    await new.migrate("demo", [M1, M2])
    await new.migrate("other", [Migration(1, "more", "CREATE TABLE more (id INTEGER PRIMARY KEY);")])
    (backup,) = (tmp_path / "upgrade-backups").glob("*.db")
    assert new.upgrade_backup == backup and "before-demo-v2" in backup.name
    assert backup.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(backup) as db:  # the database as the old release left it, data and schema
        assert db.execute("SELECT name FROM things").fetchall() == [("kept",)]
        assert [r[1] for r in db.execute("PRAGMA table_info(things)")] == ["id", "name"]
    await new.close()


def _step(v: int) -> Migration:
    return Migration(v, f"step {v}", f"CREATE TABLE t{v} (id INTEGER PRIMARY KEY);")


async def test_upgrade_backups_keep_the_newest_three_and_a_large_database_is_not_copied(tmp_path):
    path = tmp_path / "state.db"
    first = Store(path)
    await first.open()
    await first.migrate("demo", [_step(1)])
    await first.close()
    for n in range(2, 7):  # five releases, each adding a migration: five pre-upgrade copies made
        s = Store(path)
        await s.open()
        await s.migrate("demo", [_step(v) for v in range(1, n + 1)])
        assert s.upgrade_backup is not None and s.upgrade_backup.exists()
        await s.close()
    kept = sorted(p.name for p in (tmp_path / "upgrade-backups").glob("*.db"))
    # the newest three, and the first (no start in between found every schema current: it is the baseline)
    assert [n.rsplit("-", 1)[1] for n in kept] == ["v2.db", "v4.db", "v5.db", "v6.db"], kept

    big = Store(path, upgrade_backup_max_bytes=1024)  # state.db is larger than 1 KiB: no copy, still migrated
    await big.open()
    assert await big.migrate("demo", [_step(v) for v in range(1, 8)]) == 7
    assert big.upgrade_backup is None
    await big.close()
    assert sorted(p.name for p in (tmp_path / "upgrade-backups").glob("*.db")) == kept


async def test_a_crash_loop_keeps_the_copy_made_before_the_first_attempt(tmp_path):
    """One migration fails at every start: each restart copies the partly migrated database again, but the
    copy taken before the first attempt (what the earlier release wrote) is never pruned; once a start finds
    every schema current, pruning resumes."""
    path = tmp_path / "state.db"
    first = Store(path, upgrade_backups_keep=1)
    await first.open()
    await first.migrate("demo", [_step(1)])
    await first.close()
    other = [Migration(1, "o", "CREATE TABLE o1 (id INTEGER PRIMARY KEY);")]
    bad = Migration(2, "broken", "CREATE TABLE nope (id INTEGER PRIMARY KEY); SELECT * FROM missing_table;")
    baseline = None
    for _attempt in range(5):
        s = Store(path, upgrade_backups_keep=1)
        await s.open()
        await s.migrate("other", other)  # another component migrates fine (partly migrated after)
        with pytest.raises(StartupError):
            await s.migrate("demo", [_step(1), bad])
        baseline = baseline or s.upgrade_backup
        await s.close()
        await asyncio.sleep(1.05)  # copies are named by the second
    assert baseline is not None and baseline.exists()
    with sqlite3.connect(baseline) as db:  # as the earlier release left it: no trace of "other"
        assert db.execute("SELECT count(*) FROM schema_migrations WHERE component = 'other'").fetchone() == (0,)

    fixed = Store(path, upgrade_backups_keep=1)  # the fixed release: succeeds (copy made, baseline kept)
    await fixed.open()
    await fixed.migrate("other", other)
    await fixed.migrate("demo", [_step(1), _step(2)])
    await fixed.close()
    assert baseline.exists()
    steady = Store(path, upgrade_backups_keep=1)  # a start with nothing to migrate: the loop is over
    await steady.open()
    await steady.migrate("other", other)
    await steady.migrate("demo", [_step(1), _step(2)])
    await steady.close()
    await asyncio.sleep(1.05)
    later = Store(path, upgrade_backups_keep=1)  # the next upgrade prunes as before
    await later.open()
    await later.migrate("demo", [_step(1), _step(2), _step(3)])
    await later.close()
    assert not baseline.exists()
    assert later.upgrade_backup is not None
    assert [p.name for p in (tmp_path / "upgrade-backups").glob("*.db")] == [later.upgrade_backup.name]
