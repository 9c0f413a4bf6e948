"""SQL for consumer groups and their committed offsets.

A commit is an upsert keyed by (group, topic, partition). Functions take a connection and
never begin or commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple


class OffsetRow(NamedTuple):
    """A committed offset of a group."""

    topic_id: int
    topic: str
    partition: int
    committed_offset: int
    metadata: str | None
    commit_ms: int


def group_id_get(conn: sqlite3.Connection, name: str) -> int | None:
    """The id of the group called ``name``, or None."""
    row = conn.execute("SELECT group_id FROM consumer_groups WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row is not None else None


def group_id_ensure(conn: sqlite3.Connection, name: str, now_ms: int) -> int:
    """The id of the group called ``name``, created if needed (inside a write transaction).

    Looks first and inserts only when missing: an ``INSERT … ON CONFLICT DO NOTHING`` would
    still bump the AUTOINCREMENT sequence (one more page written per commit).
    """
    group_id = group_id_get(conn, name)
    if group_id is not None:
        return group_id
    cursor = conn.execute(
        "INSERT INTO consumer_groups (name, created_ms) VALUES (?, ?)", (name, now_ms)
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def offsets_commit(
    conn: sqlite3.Connection,
    group_id: int,
    rows: Iterable[tuple[int, int, int, str | None]],
    now_ms: int,
) -> None:
    """Upsert committed offsets: rows of (topic_id, partition, offset, metadata)."""
    conn.executemany(
        "INSERT INTO group_offsets "
        "(group_id, topic_id, partition, committed_offset, metadata, commit_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET "
        "committed_offset = excluded.committed_offset, metadata = excluded.metadata, "
        "commit_ms = excluded.commit_ms",
        [(group_id, t, p, o, m, now_ms) for t, p, o, m in rows],
    )


def offsets_get(
    conn: sqlite3.Connection, group_name: str, topic_id: int | None = None
) -> list[OffsetRow]:
    """A group's committed offsets, optionally for one topic."""
    sql = (
        "SELECT o.topic_id, t.name, o.partition, o.committed_offset, o.metadata, o.commit_ms "
        "FROM group_offsets AS o "
        "JOIN consumer_groups AS g ON g.group_id = o.group_id "
        "JOIN topics AS t ON t.topic_id = o.topic_id "
        "WHERE g.name = ?"
    )
    params: tuple[object, ...] = (group_name,)
    if topic_id is not None:
        sql += " AND o.topic_id = ?"
        params = (group_name, topic_id)
    rows = conn.execute(sql + " ORDER BY t.name, o.partition", params).fetchall()
    return [OffsetRow(*row) for row in rows]
