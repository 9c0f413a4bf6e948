"""SQL for the catalog: topics, partitions and topic configuration.

Functions take a connection and never begin or commit (see :mod:`pubsub.db.transaction`).
Writers must be called inside a write transaction.
"""

import json
import sqlite3
from collections.abc import Iterable, Sequence
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


class PartitionState(NamedTuple):
    """A partition's row, looked up by its key (what retention and a fetch check)."""

    topic_id: int
    partition: int
    log_start_offset: int
    next_offset: int
    record_count: int
    byte_count: int
    cleaned_offset: int


class PartitionSurvey(NamedTuple):
    """A partition's counters with the first offsets of the last minute and hour (stats)."""

    topic: str
    topic_id: int
    partition: int
    log_start_offset: int
    next_offset: int
    max_timestamp: int
    record_count: int
    byte_count: int
    first_of_minute: int | None
    first_of_hour: int | None


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
    partitions_insert(conn, topic_id, 0, partition_count)
    return topic_id


def partitions_insert(conn: sqlite3.Connection, topic_id: int, first: int, count: int) -> None:
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


def topic_resize(conn: sqlite3.Connection, topic_id: int, count: int) -> None:
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


def configs_list(conn: sqlite3.Connection) -> dict[int, dict[str, str]]:
    """The configuration every topic overrides, by topic id."""
    configs: dict[int, dict[str, str]] = {}
    for topic_id, key, value in conn.execute("SELECT topic_id, key, value FROM topic_configs"):
        configs.setdefault(topic_id, {})[key] = value
    return configs


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


def topic_bump(conn: sqlite3.Connection, topic_id: int) -> None:
    """Tell producers that cached metadata of this topic is stale."""
    conn.execute(
        "UPDATE topics SET config_version = config_version + 1 WHERE topic_id = ?", (topic_id,)
    )


_PARTITION_COLUMNS = (
    "partition, log_start_offset, next_offset, max_timestamp, record_count, byte_count"
)


def partitions_get(conn: sqlite3.Connection, topic_id: int) -> list[PartitionRow]:
    """Every partition of a topic, in order (an empty list: the topic is gone)."""
    rows = conn.execute(
        f"SELECT {_PARTITION_COLUMNS} FROM partitions WHERE topic_id = ? ORDER BY partition",
        (topic_id,),
    ).fetchall()
    return [PartitionRow(*row) for row in rows]


def partitions_list(conn: sqlite3.Connection) -> dict[int, list[PartitionRow]]:
    """Every partition of every topic, by topic id, in partition order."""
    by_topic: dict[int, list[PartitionRow]] = {}
    for topic_id, *row in conn.execute(
        f"SELECT topic_id, {_PARTITION_COLUMNS} FROM partitions ORDER BY topic_id, partition"
    ):
        by_topic.setdefault(topic_id, []).append(PartitionRow(*row))
    return by_topic


def partitions_list_by_topic_names(
    conn: sqlite3.Connection, names: Iterable[str]
) -> list[tuple[str, PartitionRow]]:
    """(topic name, partition row) of every partition of the named topics, in one statement
    (a group may span hundreds); by name, then partition. Unknown names are left out."""
    rows = conn.execute(
        "SELECT t.name, p.partition, p.log_start_offset, p.next_offset, p.max_timestamp, "
        "p.record_count, p.byte_count "
        "FROM topics AS t JOIN partitions AS p ON p.topic_id = t.topic_id "
        "WHERE t.name IN (SELECT value FROM json_each(?)) ORDER BY t.name, p.partition",
        (json.dumps(sorted(set(names))),),
    ).fetchall()
    return [(str(name), PartitionRow(*row)) for name, *row in rows]


def partition_get(conn: sqlite3.Connection, topic_id: int, partition: int) -> PartitionState | None:
    """The partition's row, or None if it is gone."""
    row = conn.execute(
        "SELECT topic_id, partition, log_start_offset, next_offset, record_count, byte_count, "
        "cleaned_offset FROM partitions WHERE topic_id = ? AND partition = ?",
        (topic_id, partition),
    ).fetchone()
    return PartitionState(*row) if row is not None else None


def partitions_survey(
    conn: sqlite3.Connection, minute_ms: int, hour_ms: int, names: Sequence[str] | None
) -> list[PartitionSurvey]:
    """Every (or every named) topic's partitions, with the first offsets whose running maximum
    timestamp reached ``minute_ms`` and ``hour_ms`` (time-index lookups); in one statement,
    by topic name and partition."""
    rows = conn.execute(
        """
SELECT t.name, p.topic_id, p.partition, p.log_start_offset, p.next_offset, p.max_timestamp,
       p.record_count, p.byte_count,
       (SELECT i."offset" FROM time_index AS i
         WHERE i.topic_id = p.topic_id AND i.partition = p.partition AND i.timestamp >= :minute
         ORDER BY i.timestamp LIMIT 1),
       (SELECT i."offset" FROM time_index AS i
         WHERE i.topic_id = p.topic_id AND i.partition = p.partition AND i.timestamp >= :hour
         ORDER BY i.timestamp LIMIT 1)
FROM topics AS t JOIN partitions AS p ON p.topic_id = t.topic_id
WHERE :names IS NULL OR t.name IN (SELECT value FROM json_each(:names))
ORDER BY t.name, p.partition
""",
        {
            "minute": minute_ms,
            "hour": hour_ms,
            "names": None if names is None else json.dumps(list(names)),
        },
    ).fetchall()
    return [PartitionSurvey(*row) for row in rows]


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
