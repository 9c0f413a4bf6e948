"""Why copying a live database with ``cp`` is not supported, and what to do instead.

In WAL mode the newest committed transactions live in the ``-wal`` file until a checkpoint
moves them into the database file. A copy of the database file alone (what ``cp db.sqlite``
of a live database, or a file-level backup tool, takes) misses them; copying both files at
different moments can pair a WAL with a database it does not belong to. ``pubsub db backup``
reads one consistent snapshot instead.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, Message
from tests.reliability.oracle import integrity, read_stored

pytestmark = pytest.mark.reliability


def test_cp_of_a_live_database_misses_committed_records(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    with Broker(db) as writer:
        writer.create_topic("t")
        writer.produce_batch("t", [Message(f"r{i}") for i in range(1000)])
        # A reader keeps the file open, as a running consumer would: no checkpoint on close.
        with Broker(db) as other:
            other.produce_batch("t", [Message(f"late{i}") for i in range(10)])
            copy = tmp_path / "copy.db"
            shutil.copyfile(db, copy)  # what `cp live.db copy.db` does
            backup = tmp_path / "backup.db"
            other.backup(backup)
    acknowledged = 1010
    try:
        copied = len(read_stored(copy).records.get(("t", 0), {}))
    except sqlite3.OperationalError:  # not even the schema had reached the database file
        copied = 0
    assert copied < acknowledged, "the plain copy happened to hold every record"
    integrity(backup)
    assert len(read_stored(backup).records[("t", 0)]) == acknowledged
