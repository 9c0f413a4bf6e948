"""pubsub.db.groups: group ids and committed offsets, on a real file."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import catalog, groups
from pubsub.db.connection import connect
from pubsub.db.transaction import WriteTransaction


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a database with topics ``a`` (2 partitions) and ``b`` (1)."""
    with Broker(db_path) as broker:
        broker.create_topic("a", partitions=2)
        broker.create_topic("b")
    c = connect(str(db_path))
    try:
        yield c
    finally:
        c.close()


def tid(conn: sqlite3.Connection, name: str) -> int:
    row = catalog.topic_get_by_name(conn, name)
    assert row is not None
    return row.topic_id


def test_group_id_ensure_creates_once_and_burns_no_ids(conn: sqlite3.Connection) -> None:
    assert groups.group_get_by_name(conn, "g") is None
    with WriteTransaction(conn, 1.0):
        first = groups.group_ensure(conn, "g", 10)
        assert groups.group_ensure(conn, "g", 20) == first
        other = groups.group_ensure(conn, "h", 30)
    row = groups.group_get_by_name(conn, "g")
    assert row is not None and row[0] == first
    assert other == first + 1  # looking up an existing group did not use an id
    created = conn.execute("SELECT created_ms FROM consumer_groups WHERE name = 'g'").fetchone()
    assert created[0] == 10


def test_offsets_commit_upserts_per_partition(conn: sqlite3.Connection) -> None:
    a, b = tid(conn, "a"), tid(conn, "b")
    with WriteTransaction(conn, 1.0):
        g = groups.group_ensure(conn, "g", 1)
        groups.offsets_commit(conn, g, [(a, 0, 5, None), (a, 1, 7, "m"), (b, 0, 1, None)], 100)
    with WriteTransaction(conn, 1.0):
        groups.offsets_commit(conn, g, [(a, 1, 9, None)], 200)
    assert groups.offsets_get(conn, "g") == [
        groups.OffsetRow(a, "a", 0, 5, None, 100),
        groups.OffsetRow(a, "a", 1, 9, None, 200),  # replaced, metadata and time too
        groups.OffsetRow(b, "b", 0, 1, None, 100),
    ]
    assert [r.partition for r in groups.offsets_get(conn, "g", b)] == [0]


def test_offsets_of_groups_are_separate(conn: sqlite3.Connection) -> None:
    a = tid(conn, "a")
    with WriteTransaction(conn, 1.0):
        g = groups.group_ensure(conn, "g", 1)
        h = groups.group_ensure(conn, "h", 1)
        groups.offsets_commit(conn, g, [(a, 0, 3, None)], 1)
        groups.offsets_commit(conn, h, [(a, 0, 8, None)], 1)
    assert [r.committed_offset for r in groups.offsets_get(conn, "g")] == [3]
    assert [r.committed_offset for r in groups.offsets_get(conn, "h")] == [8]
    assert groups.offsets_get(conn, "nobody") == []


def test_offsets_go_with_their_topic(db_path: Path, conn: sqlite3.Connection) -> None:
    a, b = tid(conn, "a"), tid(conn, "b")
    with WriteTransaction(conn, 1.0):
        g = groups.group_ensure(conn, "g", 1)
        groups.offsets_commit(conn, g, [(a, 0, 3, None), (b, 0, 4, None)], 1)
    with Broker(db_path) as broker:
        broker.delete_topic("a")
    assert [(r.topic, r.committed_offset) for r in groups.offsets_get(conn, "g")] == [("b", 4)]
