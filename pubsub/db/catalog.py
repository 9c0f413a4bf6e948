"""SQL for the catalog: topics, partitions and topic configuration.

Functions take a connection and never begin or commit (see :mod:`pubsub.db.transaction`).
Writers must be called inside a write transaction.
"""

import sqlite3
from typing import NamedTuple

from pubsub.db.log import log_table


class TopicRow(NamedTuple):
    """A row of ``topics``."""

    topic_id: int
    name: str
    partition_count: int
    created_ms: int
    config_version: int


class PartitionRow(NamedTuple):
    """A row of ``partitions``."""

    partition: int
    log_start_offset: int
    next_offset: int
    max_timestamp: int
    record_count: int
    byte_count: int


_TOPIC_COLUMNS = "topic_id, name, partition_count, created_ms, config_version"


def topic_get_by_name(conn: sqlite3.Connection, name: str) -> TopicRow | None:
    """The topic called ``name``, or None."""
    row = conn.execute(f"SELECT {_TOPIC_COLUMNS} FROM topics WHERE name = ?", (name,)).fetchone()
    return TopicRow(*row) if row is not None else None


def topic_list(conn: sqlite3.Connection) -> list[TopicRow]:
    """Every topic, by name."""
    rows = conn.execute(f"SELECT {_TOPIC_COLUMNS} FROM topics ORDER BY name").fetchall()
    return [TopicRow(*row) for row in rows]


def topic_insert(
    conn: sqlite3.Connection,
    name: str,
    partition_count: int,
    created_ms: int,
    configs: dict[str, str],
) -> int:
    """Create a topic, its partitions and their log tables; return the new topic id."""
    cursor = conn.execute(
        "INSERT INTO topics (name, partition_count, created_ms) VALUES (?, ?, ?)",
        (name, partition_count, created_ms),
    )
    topic_id = cursor.lastrowid
    assert topic_id is not None
    configs_set(conn, topic_id, configs)
    partitions_add(conn, topic_id, 0, partition_count)
    return topic_id


def partitions_add(conn: sqlite3.Connection, topic_id: int, first: int, count: int) -> None:
    """Create partitions ``first`` … ``count - 1`` and their log tables."""
    for partition in range(first, count):
        conn.execute(
            "INSERT INTO partitions (topic_id, partition) VALUES (?, ?)", (topic_id, partition)
        )
        # The table name is built from integers only.
        conn.execute(
            f"CREATE TABLE {log_table(topic_id, partition)} ("
            '"offset" INTEGER PRIMARY KEY, '
            "timestamp INTEGER NOT NULL, "
            "key BLOB, "
            "value BLOB, "
            "headers TEXT)"
        )


def topic_set_partition_count(conn: sqlite3.Connection, topic_id: int, count: int) -> None:
    """Record a new partition count (the caller created the partitions)."""
    conn.execute(
        "UPDATE topics SET partition_count = ?, config_version = config_version + 1 "
        "WHERE topic_id = ?",
        (count, topic_id),
    )


def topic_delete(conn: sqlite3.Connection, topic: TopicRow) -> None:
    """Drop a topic's log tables and every catalog row that refers to it."""
    for partition in range(topic.partition_count):
        conn.execute(f"DROP TABLE IF EXISTS {log_table(topic.topic_id, partition)}")
    conn.execute("DELETE FROM time_index WHERE topic_id = ?", (topic.topic_id,))
    # ON DELETE CASCADE removes partitions, topic_configs and group_offsets.
    conn.execute("DELETE FROM topics WHERE topic_id = ?", (topic.topic_id,))


def configs_get(conn: sqlite3.Connection, topic_id: int) -> dict[str, str]:
    """The configuration a topic overrides, as stored strings."""
    rows = conn.execute(
        "SELECT key, value FROM topic_configs WHERE topic_id = ? ORDER BY key", (topic_id,)
    ).fetchall()
    return {key: value for key, value in rows}


def configs_set(conn: sqlite3.Connection, topic_id: int, configs: dict[str, str]) -> None:
    """Insert or replace configuration entries."""
    conn.executemany(
        "INSERT INTO topic_configs (topic_id, key, value) VALUES (?, ?, ?) "
        "ON CONFLICT (topic_id, key) DO UPDATE SET value = excluded.value",
        [(topic_id, key, value) for key, value in configs.items()],
    )


def configs_delete(conn: sqlite3.Connection, topic_id: int, keys: list[str]) -> None:
    """Remove configuration entries (the topic falls back to the defaults)."""
    conn.executemany(
        "DELETE FROM topic_configs WHERE topic_id = ? AND key = ?",
        [(topic_id, key) for key in keys],
    )


def topic_bump_version(conn: sqlite3.Connection, topic_id: int) -> None:
    """Tell producers that cached metadata of this topic is stale."""
    conn.execute(
        "UPDATE topics SET config_version = config_version + 1 WHERE topic_id = ?", (topic_id,)
    )


def partitions_get(conn: sqlite3.Connection, topic_id: int) -> list[PartitionRow]:
    """Every partition of a topic, in order."""
    rows = conn.execute(
        "SELECT partition, log_start_offset, next_offset, max_timestamp, record_count, "
        "byte_count FROM partitions WHERE topic_id = ? ORDER BY partition",
        (topic_id,),
    ).fetchall()
    return [PartitionRow(*row) for row in rows]


def defaults_get(conn: sqlite3.Connection) -> dict[str, str]:
    """The database-wide configuration defaults for new topics."""
    return dict(conn.execute("SELECT key, value FROM config_defaults ORDER BY key").fetchall())


def defaults_set(conn: sqlite3.Connection, values: dict[str, str], unset: list[str]) -> None:
    """Set and remove database-wide defaults."""
    conn.executemany(
        "INSERT INTO config_defaults (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )
    conn.executemany("DELETE FROM config_defaults WHERE key = ?", [(key,) for key in unset])
