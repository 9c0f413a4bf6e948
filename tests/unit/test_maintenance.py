"""Maintenance through the Broker: check, vacuum and backup, on real files."""

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.errors import AlreadyExistsError, StorageError
from pubsub.maintenance import CHECKS
from tests.helpers import all_records


@pytest.fixture
def filled(db_path: Path) -> Path:
    """A database with topic ``t`` (2 partitions, 50 records each, 100-byte values)."""
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
        for partition in (0, 1):
            broker.produce_batch("t", [b"v" * 100] * 50, partition=partition)
    return db_path


def tamper(db: Path, *statements: str) -> None:
    """Damage pubsub's invariants behind its back (SQLite itself stays consistent)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def problems(db: Path, quick: bool = False) -> set[tuple[str, str]]:
    with Broker(db) as broker:
        found = broker.check(quick=quick)
    assert all(p.check in CHECKS and p.detail for p in found)
    return {(p.check, p.where) for p in found}


def test_a_healthy_database_has_no_problems(filled: Path) -> None:
    assert problems(filled) == set()
    assert problems(filled, quick=True) == set()


def test_check_finds_wrong_counters(filled: Path) -> None:
    tamper(filled, "UPDATE partitions SET record_count = 49 WHERE partition = 1")
    assert problems(filled) == {("counters", "t[1]")}


def test_check_finds_offsets_that_would_be_handed_out_again(filled: Path) -> None:
    tamper(filled, "UPDATE partitions SET next_offset = 10 WHERE partition = 0")
    assert ("offsets", "t[0]") in problems(filled)


def test_check_finds_a_time_index_past_the_end(filled: Path) -> None:
    tamper(
        filled,
        'INSERT INTO time_index (topic_id, partition, timestamp, "offset") '
        "SELECT topic_id, 0, 9999999999999, 500 FROM topics",
    )
    assert problems(filled) == {("time_index", "t[0]")}


def test_check_finds_missing_and_stray_log_tables(filled: Path) -> None:
    with Broker(filled) as broker:
        topic_id = broker.store.connection.execute("SELECT topic_id FROM topics").fetchone()[0]
    tamper(
        filled,
        f"DROP TABLE log_{topic_id}_1",
        'CREATE TABLE log_999_0 ("offset" INTEGER PRIMARY KEY)',
    )
    assert problems(filled) == {("tables", "t[1]"), ("tables", "log_999_0")}


def test_vacuum_returns_freed_pages_and_shrinks_the_file(filled: Path) -> None:
    with Broker(filled) as broker:
        broker.create_topic("big")
        broker.produce_batch("big", [b"x" * 4000] * 500)
        broker.delete_topic("big")
        size = filled.stat().st_size
        freed = broker.vacuum()
        assert freed > 400  # 2 MB of 4 KiB pages
        assert filled.stat().st_size < size - 1_000_000
        assert broker.vacuum() == 0  # nothing left to free
        assert broker.check() == []
        assert sum(len(r) for r in all_records(broker, "t").values()) == 100


def test_full_vacuum_rebuilds_the_file(filled: Path) -> None:
    with Broker(filled) as broker:
        broker.create_topic("big")
        broker.produce_batch("big", [b"x" * 4000] * 200)
        broker.delete_topic("big")
        free = broker.store.connection.execute("PRAGMA freelist_count").fetchone()[0]
        assert free > 100
        assert broker.vacuum(full=True) >= free
        assert broker.store.connection.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert broker.check() == []
        assert all_records(broker, "t")[0][-1] == (49, b"v" * 100)


def test_backup_is_a_complete_database_with_the_mode_asked(filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    progress: list[tuple[float, float]] = []
    with Broker(filled) as broker:
        broker.produce("t", b"last", partition=0)
        size = broker.backup(
            target, mode=0o640, progress=lambda done, total: progress.append((done, total))
        )
        original = all_records(broker, "t")
    assert size == target.stat().st_size > 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert progress and progress[-1][0] == progress[-1][1] > 0
    with Broker(target, create=False) as copy:
        assert all_records(copy, "t") == original
        assert copy.check() == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".copy")) == []


def test_backup_refuses_to_overwrite_or_to_write_nowhere(filled: Path, tmp_path: Path) -> None:
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep me")
    with Broker(filled) as broker:
        with pytest.raises(AlreadyExistsError):
            broker.backup(existing)
        with pytest.raises(StorageError, match="does not exist"):
            broker.backup(tmp_path / "no" / "such" / "dir.db")
    assert existing.read_bytes() == b"keep me"


def test_backup_removes_temporaries_of_dead_backups_only(filled: Path, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".copy.db.{int(dead.stdout)}.tmp"
    running = tmp_path / f".copy.db.{os.getppid()}.tmp"  # a live process: left alone
    stale.write_bytes(b"half a backup")
    running.write_bytes(b"in progress")
    with Broker(filled) as broker:
        broker.backup(tmp_path / "copy.db")
    assert not stale.exists()
    assert running.read_bytes() == b"in progress"
