"""Opening the file: PRAGMAs, creation, durability mode, busy and corrupt files."""

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.connection import connect
from pubsub.errors import (
    BusyError,
    CorruptDatabaseError,
    DatabaseNotFoundError,
    InvalidArgumentError,
)


def pragma(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_new_file_settings(db_path: Path) -> None:
    with Broker(db_path) as broker:
        conn = broker.store.connection
        assert pragma(conn, "journal_mode") == "wal"
        assert pragma(conn, "synchronous") == 2  # FULL by default
        assert pragma(conn, "auto_vacuum") == 2  # INCREMENTAL, set before the first table
        assert pragma(conn, "foreign_keys") == 1
        assert pragma(conn, "busy_timeout") == 10_000
        assert conn.isolation_level is None
        assert not conn.in_transaction
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def test_normal_sync_is_opt_in(db_path: Path) -> None:
    with Broker(db_path, sync="normal", busy_timeout=2.5) as broker:
        assert pragma(broker.store.connection, "synchronous") == 1
        assert pragma(broker.store.connection, "busy_timeout") == 2500


def test_unknown_sync_mode(db_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="sync mode"):
        connect(str(db_path), sync="off")  # type: ignore[arg-type]
    assert not db_path.exists()


def test_create_false_does_not_create(db_path: Path) -> None:
    with pytest.raises(DatabaseNotFoundError) as info:
        Broker(db_path, create=False)
    assert info.value.exit_code == 3
    assert not db_path.exists()


def test_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="directory does not exist") as info:
        Broker(tmp_path / "missing" / "x.db")
    assert getattr(info.value, "exit_code", None) == 7


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, just text\n" * 200,
        os.urandom(8192),
        b"SQLite format 3\0" + b"\xff" * 4080,
    ],
)
def test_not_a_database(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    with pytest.raises(CorruptDatabaseError) as info:
        Broker(db_path)
    assert info.value.exit_code == 6
    assert db_path.read_bytes() == content  # nothing written


def test_busy_write_is_one_clear_error(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Broker(db_path, busy_timeout=0.2) as broker:
            with pytest.raises(BusyError) as info:
                broker.produce("t", b"v")
            assert info.value.exit_code == 5
            assert info.value.hint
            assert not broker.store.connection.in_transaction
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Broker(db_path) as broker:
        assert broker.produce("t", b"v").offset == 0


def test_write_waits_for_a_short_lock(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with Broker(db_path, busy_timeout=10) as broker:
            assert broker.produce("t", b"after the lock").offset == 0
    finally:
        release.join()
        holder.close()


def test_memory_database_works() -> None:
    with Broker(":memory:") as broker:
        broker.create_topic("t")
        assert broker.produce("t", b"x").offset == 0
