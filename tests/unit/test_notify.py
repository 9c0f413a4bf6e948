"""pubsub.db.notify.ChangeWaiter: woken by other connections' commits, with either signal.

The cross-process wake-up and its latency are measured in tests/concurrency/test_live.py.
"""

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.connection import connect
from pubsub.db.notify import ChangeWaiter

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def conns(db_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """The waiter's connection and another one that writes."""
    Broker(db_path).close()
    mine, other = connect(str(db_path)), connect(str(db_path), busy_timeout=5)
    try:
        yield mine, other
    finally:
        mine.close()
        other.close()


def commit(conn: sqlite3.Connection, name: str = "g") -> None:
    conn.execute("INSERT INTO consumer_groups (name, created_ms) VALUES (?, 1)", (name,))


@pytest.fixture(params=[True, False], ids=["inotify", "polling"])
def waiter(
    request: pytest.FixtureRequest,
    db_path: Path,
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> Iterator[ChangeWaiter]:
    w = ChangeWaiter(conns[0], str(db_path), use_inotify=request.param)
    assert w.uses_inotify == (request.param and LINUX)
    try:
        yield w
    finally:
        w.close()


def test_quiet_database_waits_the_whole_timeout(waiter: ChangeWaiter) -> None:
    started = time.monotonic()
    assert waiter.wait(0.2) is False
    assert time.monotonic() - started >= 0.19


def test_commit_made_before_the_wait_is_reported_at_once(
    waiter: ChangeWaiter, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    commit(conns[1])
    started = time.monotonic()
    assert waiter.wait(10) is True
    assert time.monotonic() - started < 5  # at once, not at the timeout
    assert waiter.wait(0.05) is False  # reported once


def test_commit_during_the_wait_wakes_it(
    waiter: ChangeWaiter, conns: tuple[sqlite3.Connection, sqlite3.Connection], db_path: Path
) -> None:
    def commit_later() -> None:
        # Pacing, not synchronisation: the commit must land while the waiter sleeps.
        time.sleep(0.2)
        other = connect(str(db_path))
        try:
            commit(other, "late")
        finally:
            other.close()

    thread = threading.Thread(target=commit_later)
    started = time.monotonic()  # before the thread starts: its 0.2 s pacing is inside
    thread.start()
    try:
        assert waiter.wait(30) is True
        waited = time.monotonic() - started
    finally:
        thread.join()
    assert 0.15 < waited < 10  # woken by the commit, long before the timeout


def test_own_commits_do_not_count(
    waiter: ChangeWaiter, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    commit(conns[0])  # data_version changes only for commits by other connections
    assert waiter.wait(0.05) is False


def test_mark_forgets_earlier_commits(
    waiter: ChangeWaiter, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    commit(conns[1], "a")
    waiter.mark()
    assert waiter.changed() is False
    assert waiter.wait(0.05) is False
    commit(conns[1], "b")
    assert waiter.changed() is True
    assert waiter.changed() is False


def test_inotify_descriptor_becomes_readable_on_a_commit(
    db_path: Path, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    if not LINUX:
        pytest.skip("inotify exists on Linux only")
    import select

    waiter = ChangeWaiter(conns[0], str(db_path))
    try:
        fd = waiter.fileno()
        assert fd is not None
        assert waiter.drain() is False
        assert select.select([fd], [], [], 0)[0] == []
        commit(conns[1])
        assert select.select([fd], [], [], 10)[0] == [fd]
        assert waiter.drain() is True
        assert waiter.drain() is False  # the events were read
        # Files other than the database's WAL do not count.
        (db_path.parent / "unrelated").write_bytes(b"x")
        assert select.select([fd], [], [], 10)[0] == [fd]
        assert waiter.drain() is False
    finally:
        waiter.close()
        waiter.close()
    assert waiter.fileno() is None


def test_waiter_uses_inotify_on_linux(db_path: Path) -> None:
    with Broker(db_path) as broker:
        waiter = ChangeWaiter(broker.store.connection, str(db_path))
        try:
            assert waiter.uses_inotify == LINUX
        finally:
            waiter.close()


def test_no_inotify_where_it_cannot_or_must_not_be_used(
    db_path: Path,
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = sqlite3.connect(":memory:")
    try:
        assert ChangeWaiter(memory, ":memory:").uses_inotify is False
        assert ChangeWaiter(memory).fileno() is None
    finally:
        memory.close()
    monkeypatch.setenv("PUBSUB_NO_INOTIFY", "1")
    waiter = ChangeWaiter(conns[0], str(db_path))
    assert waiter.uses_inotify is False
    commit(conns[1])
    assert waiter.wait(10) is True  # the polling fallback still sees commits


def test_follows_a_replaced_connection(
    db_path: Path, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    """Given a callable, the waiter reads whichever connection its owner holds now."""
    holder = [connect(str(db_path))]
    waiter = ChangeWaiter(lambda: holder[0], str(db_path))
    try:
        holder[0].close()
        holder[0] = connect(str(db_path))
        waiter.mark()
        commit(conns[1])
        assert waiter.wait(10) is True
    finally:
        waiter.close()
        holder[0].close()
