"""pubsub.db.catalog: topics, partitions, their log tables and configuration, on a real file."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import catalog, log
from pubsub.db.connection import connect
from pubsub.db.transaction import WriteTransaction
from pubsub.errors import PubsubError


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a new, migrated database."""
    Broker(db_path).close()
    c = connect(str(db_path))
    try:
        yield c
    finally:
        c.close()


def tables(conn: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'log!_%' ESCAPE '!'"
        )
    }


def create(conn: sqlite3.Connection, name: str, partitions: int, **configs: str) -> int:
    with WriteTransaction(conn, 1.0):
        return catalog.topic_insert(conn, name, partitions, 1_234, configs)


def test_topic_insert_creates_rows_tables_and_configs(conn: sqlite3.Connection) -> None:
    tid = create(conn, "orders", 3, **{"retention.ms": "60000"})
    row = catalog.topic_get_by_name(conn, "orders")
    assert row is not None
    assert (row.topic_id, row.name, row.partition_count, row.created_ms) == (
        tid,
        "orders",
        3,
        1_234,
    )
    assert [p.partition for p in catalog.partitions_get(conn, tid)] == [0, 1, 2]
    assert all(
        (p.log_start_offset, p.next_offset, p.record_count, p.byte_count) == (0, 0, 0, 0)
        for p in catalog.partitions_get(conn, tid)
    )
    assert tables(conn) == {log.log_table(tid, p) for p in range(3)}
    assert catalog.configs_get(conn, tid) == {"retention.ms": "60000"}


def test_lookup_by_name_is_exact(conn: sqlite3.Connection) -> None:
    create(conn, "Orders", 1)
    assert catalog.topic_get_by_name(conn, "orders") is None
    assert catalog.topic_get_by_name(conn, "Orders") is not None
    assert catalog.topic_get_by_name(conn, "Orders' OR '1'='1") is None


def test_duplicate_name_is_refused_and_leaves_nothing(conn: sqlite3.Connection) -> None:
    create(conn, "t", 1)
    with pytest.raises(PubsubError):
        create(conn, "t", 2)
    assert [t.partition_count for t in catalog.topic_list(conn)] == [1]
    assert len(tables(conn)) == 1


def test_topic_list_is_by_name(conn: sqlite3.Connection) -> None:
    for name in ("b", "a", "c"):
        create(conn, name, 1)
    assert [t.name for t in catalog.topic_list(conn)] == ["a", "b", "c"]


def test_partitions_add_and_count(conn: sqlite3.Connection) -> None:
    tid = create(conn, "t", 2)
    before = catalog.topic_get_by_name(conn, "t")
    assert before is not None
    with WriteTransaction(conn, 1.0):
        catalog.partitions_insert(conn, tid, 2, 5)
        catalog.topic_resize(conn, tid, 5)
    after = catalog.topic_get_by_name(conn, "t")
    assert after is not None
    assert after.partition_count == 5
    assert after.config_version == before.config_version + 1  # producers' caches go stale
    assert [p.partition for p in catalog.partitions_get(conn, tid)] == [0, 1, 2, 3, 4]
    assert tables(conn) == {log.log_table(tid, p) for p in range(5)}


def test_topic_delete_removes_everything_that_refers_to_it(conn: sqlite3.Connection) -> None:
    keep = create(conn, "keep", 1)
    tid = create(conn, "gone", 2, **{"cleanup.policy": "delete"})
    with WriteTransaction(conn, 1.0):
        conn.execute(
            'INSERT INTO time_index (topic_id, partition, timestamp, "offset") VALUES (?, 0, 5, 0)',
            (tid,),
        )
        conn.execute("INSERT INTO consumer_groups (name, created_ms) VALUES ('g', 1)")
        conn.execute(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset, "
            "commit_ms) SELECT group_id, ?, 0, 0, 1 FROM consumer_groups",
            (tid,),
        )
    row = catalog.topic_get_by_name(conn, "gone")
    assert row is not None
    with WriteTransaction(conn, 1.0):
        catalog.topic_delete(conn, row)
    assert catalog.topic_get_by_name(conn, "gone") is None
    assert tables(conn) == {log.log_table(keep, 0)}
    for table in ("partitions", "topic_configs", "time_index", "group_offsets"):
        count = conn.execute(f"SELECT count(*) FROM {table} WHERE topic_id = ?", (tid,))
        assert count.fetchone()[0] == 0, table
    assert catalog.partitions_get(conn, keep) != []


def test_configs_set_replaces_and_delete_falls_back(conn: sqlite3.Connection) -> None:
    tid = create(conn, "t", 1, **{"retention.ms": "1000", "retention.bytes": "10"})
    with WriteTransaction(conn, 1.0):
        catalog.configs_set(conn, tid, {"retention.ms": "2000", "segment.ms": "5"})
    assert catalog.configs_get(conn, tid) == {
        "retention.bytes": "10",
        "retention.ms": "2000",
        "segment.ms": "5",
    }
    with WriteTransaction(conn, 1.0):
        catalog.configs_delete(conn, tid, ["retention.bytes", "not.set"])
    assert catalog.configs_get(conn, tid) == {"retention.ms": "2000", "segment.ms": "5"}


def test_bump_version_only_touches_its_topic(conn: sqlite3.Connection) -> None:
    a = create(conn, "a", 1)
    create(conn, "b", 1)
    versions = {t.name: t.config_version for t in catalog.topic_list(conn)}
    with WriteTransaction(conn, 1.0):
        catalog.topic_bump(conn, a)
        catalog.topic_bump(conn, a)
    after = {t.name: t.config_version for t in catalog.topic_list(conn)}
    assert after == {"a": versions["a"] + 2, "b": versions["b"]}


def test_defaults_set_and_unset(conn: sqlite3.Connection) -> None:
    before = catalog.defaults_get(conn)
    with WriteTransaction(conn, 1.0):
        catalog.defaults_set(conn, {"retention.ms": "7", "partitions": "4"}, [])
    assert catalog.defaults_get(conn) == {**before, "retention.ms": "7", "partitions": "4"}
    with WriteTransaction(conn, 1.0):
        catalog.defaults_set(conn, {"retention.ms": "8"}, ["partitions"])
    assert catalog.defaults_get(conn) == {**before, "retention.ms": "8"}
