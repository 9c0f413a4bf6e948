"""pubsub.db.transaction: BEGIN IMMEDIATE writes, read snapshots, scripts and checkpoints."""

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.connection import connect
from pubsub.db.pragmas import checkpoint_growth
from pubsub.db.pragmas import wal_checkpoint as checkpoint_truncate
from pubsub.db.transaction import (
    ReadScope,
    ReadTransaction,
    WriteTransaction,
    begin_immediate,
    run_script_immediate,
)
from pubsub.errors import BusyError, PubsubError, StorageError

INSERT_GROUP = "INSERT INTO consumer_groups (name, created_ms) VALUES (?, 1)"


def groups(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM consumer_groups ORDER BY name")]


@pytest.fixture
def conns(db_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """Two connections to one migrated database file."""
    Broker(db_path).close()
    first, second = connect(str(db_path)), connect(str(db_path))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_write_transaction_commits_for_every_connection(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, reader = conns
    with WriteTransaction(writer, 1.0) as conn:
        assert conn is writer and conn.in_transaction
        conn.execute(INSERT_GROUP, ("g",))
        assert groups(reader) == []  # not visible before the commit
    assert not writer.in_transaction
    assert groups(reader) == ["g"]


def test_write_lock_is_taken_before_the_first_write(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    """BEGIN IMMEDIATE: an open write transaction that has written nothing yet already keeps
    every other writer out, so no one can fail later with an unwaitable SQLITE_BUSY."""
    first, second = conns
    with WriteTransaction(first, 1.0):
        started = time.monotonic()
        with pytest.raises(BusyError, match=r"locked for more than 0\.2 s"):
            begin_immediate(second, 0.2)
        assert time.monotonic() - started >= 0.19  # it waited the whole timeout
        assert not second.in_transaction


def test_busy_timeout_is_put_back_after_each_attempt(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    first, second = conns
    begin_immediate(first, 2.5)
    assert first.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    with pytest.raises(BusyError):
        begin_immediate(second, 0.05)
    assert second.execute("PRAGMA busy_timeout").fetchone()[0] == 50
    first.execute("ROLLBACK")


def test_lock_is_taken_soon_after_it_is_released(db_path: Path) -> None:
    """The lock is polled every millisecond at most, not on SQLite's busy-handler schedule
    (which can sleep 25-100 ms after the lock became free)."""
    Broker(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    held = threading.Event()
    released = 0.0

    def release() -> None:
        nonlocal released
        held.wait(10)
        # Pacing, not synchronisation: hold the lock long enough for the waiter to back off.
        time.sleep(0.2)
        holder.execute("COMMIT")
        released = time.monotonic()

    thread = threading.Thread(target=release)
    thread.start()
    waiter = connect(str(db_path))
    try:
        held.set()
        begin_immediate(waiter, 10)
        acquired = time.monotonic()
        waiter.execute("ROLLBACK")
    finally:
        thread.join()
        holder.close()
        waiter.close()
    assert released > 0
    assert acquired - released < 0.05, f"took the lock {acquired - released:.3f} s after release"


def test_exception_rolls_back_and_is_not_translated(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, reader = conns
    with pytest.raises(RuntimeError, match="boom"), WriteTransaction(writer, 1.0):
        writer.execute(INSERT_GROUP, ("g",))
        raise RuntimeError("boom")
    assert not writer.in_transaction
    assert groups(writer) == groups(reader) == []


def test_sqlite_errors_are_translated_and_the_connection_kept(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, _ = conns
    discarded: list[bool] = []
    on_storage_error = lambda: discarded.append(True)  # noqa: E731
    with pytest.raises(PubsubError) as info, WriteTransaction(writer, 1.0, "", on_storage_error):
        writer.execute(INSERT_GROUP, ("g",))
        writer.execute(INSERT_GROUP, ("g",))  # UNIQUE constraint
    assert not isinstance(info.value, StorageError)
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert discarded == []  # not a storage error: the connection stays trusted
    assert groups(writer) == []


def test_storage_error_tells_the_owner_of_the_connection(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    """A write SQLite refuses for a storage reason (here: a read-only connection) is a
    StorageError, and the owner is told so that it never reuses the connection."""
    writer, reader = conns
    discarded: list[bool] = []
    on_storage_error = lambda: discarded.append(True)  # noqa: E731
    with (
        pytest.raises(StorageError, match="read-only"),
        WriteTransaction(writer, 1.0, "", on_storage_error),
    ):
        writer.execute("PRAGMA query_only = 1")
        writer.execute(INSERT_GROUP, ("g",))
    writer.execute("PRAGMA query_only = 0")
    assert discarded == [True]
    assert not writer.in_transaction
    assert groups(reader) == []


def test_storage_error_raised_inside_also_tells_the_owner(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, _ = conns
    discarded: list[bool] = []
    on_storage_error = lambda: discarded.append(True)  # noqa: E731
    with pytest.raises(StorageError), WriteTransaction(writer, 1.0, "", on_storage_error):
        raise StorageError("the disk went away")
    assert discarded == [True]


def test_read_transaction_reads_one_snapshot(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    reader, writer = conns
    with WriteTransaction(writer, 1.0):
        writer.execute(INSERT_GROUP, ("before",))
    with ReadTransaction(reader) as conn:
        assert groups(conn) == ["before"]
        with WriteTransaction(writer, 1.0):  # readers never block the writer (WAL)
            writer.execute(INSERT_GROUP, ("during",))
        assert groups(conn) == ["before"]  # still the snapshot the first read took
    assert groups(reader) == ["before", "during"]
    assert reader.execute("PRAGMA query_only").fetchone()[0] == 0


def test_read_transaction_cannot_write(db_path: Path) -> None:
    """The one deferred transaction is read-only for real: a write in it fails, and the
    connection writes normally afterwards."""
    Broker(db_path).close()
    conn = connect(str(db_path))
    with pytest.raises(PubsubError), ReadTransaction(conn) as reader:
        reader.execute("INSERT INTO consumer_groups (name, created_ms) VALUES ('g', 1)")
    assert not conn.in_transaction
    with WriteTransaction(conn, 1.0):
        conn.execute("INSERT INTO consumer_groups (name, created_ms) VALUES ('g', 1)")
    assert conn.execute("SELECT count(*) FROM consumer_groups").fetchone()[0] == 1
    conn.close()


def test_read_scope_translates_sqlite_errors(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    conn, _ = conns
    with pytest.raises(PubsubError, match=r"\(where\.db\): no such table"), ReadScope("where.db"):
        conn.execute("SELECT * FROM no_such_table")
    with pytest.raises(KeyError), ReadScope():
        raise KeyError("other exceptions pass through")


def test_script_runs_whole_in_one_transaction(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, reader = conns
    run_script_immediate(
        writer,
        "INSERT INTO consumer_groups (name, created_ms) VALUES ('a', 1); "
        "INSERT INTO consumer_groups (name, created_ms) VALUES ('b', 1);",
        1.0,
    )
    assert groups(reader) == ["a", "b"]
    with pytest.raises(PubsubError):
        run_script_immediate(
            writer,
            "INSERT INTO consumer_groups (name, created_ms) VALUES ('c', 1); "
            "INSERT INTO consumer_groups (name, created_ms) VALUES ('a', 1);",
            1.0,
        )
    assert not writer.in_transaction
    assert groups(reader) == ["a", "b"]  # the failed script left nothing behind


def test_script_gives_up_on_a_lock_held_past_its_timeout(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, holder = conns
    writer.execute("PRAGMA busy_timeout = 0")
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(BusyError):
            run_script_immediate(
                writer, "INSERT INTO consumer_groups (name, created_ms) VALUES ('a', 1);", 0.2
            )
        assert time.monotonic() - started >= 0.19
    finally:
        holder.execute("ROLLBACK")
    assert groups(writer) == []


def test_checkpoint_truncate_empties_the_wal_unless_a_reader_pins_it(
    db_path: Path, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    writer, reader = conns
    wal = Path(str(db_path) + "-wal")
    with WriteTransaction(writer, 1.0):
        writer.execute(INSERT_GROUP, ("a",))
    with ReadTransaction(reader):
        groups(reader)  # the snapshot is taken
        with WriteTransaction(writer, 1.0):
            writer.execute(INSERT_GROUP, ("b",))
        writer.execute("PRAGMA busy_timeout = 0")
        assert checkpoint_truncate(writer, str(db_path)) is False
        assert wal.stat().st_size > 0
    assert checkpoint_truncate(writer, str(db_path)) is True
    assert wal.stat().st_size == 0
    assert groups(reader) == ["a", "b"]


def test_checkpoint_growth_is_what_the_wal_adds_to_the_file(
    db_path: Path, conns: tuple[sqlite3.Connection, sqlite3.Connection]
) -> None:
    writer, _ = conns
    assert checkpoint_truncate(writer, str(db_path))
    assert checkpoint_growth(writer, str(db_path)) == 0
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    with WriteTransaction(writer, 1.0):
        writer.executemany(
            "INSERT INTO consumer_groups (name, created_ms) VALUES (?, 1)",
            [(f"g{i:06d}" + "x" * 200,) for i in range(2000)],
        )
    growth = checkpoint_growth(writer, str(db_path))
    page_size = writer.execute("PRAGMA page_size").fetchone()[0]
    assert growth >= 50 * page_size  # 2,000 rows of 200 bytes are only in the WAL
    before = db_path.stat().st_size
    assert checkpoint_truncate(writer, str(db_path))
    assert db_path.stat().st_size - before == growth
    assert checkpoint_growth(writer, str(db_path)) == 0
    assert checkpoint_growth(writer, str(db_path.with_name("missing.db"))) == 0
