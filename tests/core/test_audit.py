"""The audit log keeps entries it cannot write (SQLite says the database is full) and writes them, in
order, once it can. `PRAGMA max_page_count` makes SQLite answer SQLITE_FULL for real."""

from __future__ import annotations

from core.audit import AuditEntry, AuditLog
from core.clock import ManualClock
from core.errors import is_disk_full


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        actor="alice",
        role="admin",
        action=f"thing.{i}",
        target=None,
        outcome="ok",
        status=200,
        client_ip="10.0.0.1",
        after={"password": "hunter22", "n": i},
    )


async def _fill_database(store) -> None:
    """Cap the file at its size, then add audit rows until no page has room: SQLITE_FULL from then on."""
    row = await store.fetchone("PRAGMA page_count")
    await store._writer.execute(f"PRAGMA max_page_count = {row[0] + 1}")
    for i in range(10_000):
        try:
            await store.execute(
                "INSERT INTO audit (at, actor, action, outcome) VALUES (0, 'filler', ?, 'ok')", (f"filler.{i}",)
            )
        except Exception as e:
            assert is_disk_full(e), e
            return
    raise AssertionError("the database never filled up")


async def _unfill(store) -> None:
    await store._writer.execute("PRAGMA max_page_count = 1073741823")


async def test_entries_wait_while_full_and_are_written_in_order(store):
    clock = ManualClock()
    audit = AuditLog(store, clock=clock)
    assert await audit.record(_entry(0))
    await _fill_database(store)
    for i in (1, 2, 3):
        clock.advance(1)
        assert await audit.record(_entry(i)) is None
    assert audit.pending == 3
    listed = await audit.list(actor="alice")
    assert [(e["action"], e.get("pending", False)) for e in listed] == [
        ("thing.3", True),
        ("thing.2", True),
        ("thing.1", True),
        ("thing.0", False),
    ]
    assert listed[0]["after"] == {"password": "[redacted]", "n": 3}
    assert [e["action"] for e in await audit.list(action="thing.2")] == ["thing.2"]
    await _unfill(store)
    clock.advance(10)
    assert await audit.record(_entry(4))
    assert audit.pending == 0
    listed = await audit.list(actor="alice")
    assert [e["action"] for e in listed] == [f"thing.{i}" for i in (4, 3, 2, 1, 0)]
    assert [e["at"] for e in listed] == sorted((e["at"] for e in listed), reverse=True)
    assert listed[3]["at"] < listed[0]["at"] - 5  # the time of the attempt, not of the write


async def test_waiting_entries_are_bounded_and_the_loss_is_recorded(store):
    audit = AuditLog(store, clock=ManualClock(), max_pending=3)
    await _fill_database(store)
    for i in range(5):
        await audit.record(_entry(i))
    assert audit.pending == 3 and audit.dropped == 2
    await _unfill(store)
    await audit.flush()
    listed = [e for e in await audit.list(limit=1000) if e["actor"] != "filler"]
    assert [e["action"] for e in listed] == ["thing.4", "thing.3", "thing.2", "audit.dropped"]
    assert listed[-1]["after"] == {"dropped_entries": 2} and audit.dropped == 0


def test_disk_full_is_recognised_through_causes():
    import errno
    import sqlite3

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error as e:
            raise RuntimeError("while saving") from e
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
