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


class GroupRow(NamedTuple):
    """A row of ``consumer_groups``."""

    group_id: int
    name: str
    generation: int


_GROUP_COLUMNS = "group_id, name, generation"


def group_get_by_name(conn: sqlite3.Connection, name: str) -> GroupRow | None:
    """The group called ``name``, or None."""
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM consumer_groups WHERE name = ?", (name,)
    ).fetchone()
    return GroupRow(*row) if row is not None else None


def group_get_by_id(conn: sqlite3.Connection, group_id: int) -> GroupRow | None:
    """The group with id ``group_id``, or None."""
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM consumer_groups WHERE group_id = ?", (group_id,)
    ).fetchone()
    return GroupRow(*row) if row is not None else None


def group_list(conn: sqlite3.Connection) -> list[GroupRow]:
    """Every group, by name."""
    rows = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM consumer_groups ORDER BY name").fetchall()
    return [GroupRow(*row) for row in rows]


def group_ensure(conn: sqlite3.Connection, name: str, now_ms: int) -> int:
    """The id of the group called ``name``, created if needed (inside a write transaction).

    Looks first and inserts only when missing: an ``INSERT … ON CONFLICT DO NOTHING`` would
    still bump the AUTOINCREMENT sequence (one more page written per commit).
    """
    row = conn.execute("SELECT group_id FROM consumer_groups WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    cursor = conn.execute(
        "INSERT INTO consumer_groups (name, created_ms) VALUES (?, ?)", (name, now_ms)
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def group_delete(conn: sqlite3.Connection, group_id: int) -> None:
    """Delete a group (its offsets, members and assignments go with it: ON DELETE CASCADE)."""
    conn.execute("DELETE FROM consumer_groups WHERE group_id = ?", (group_id,))


def group_bump(conn: sqlite3.Connection, group_id: int) -> int:
    """Start a new generation (membership or subscriptions changed); return it."""
    conn.execute(
        "UPDATE consumer_groups SET generation = generation + 1 WHERE group_id = ?", (group_id,)
    )
    return int(
        conn.execute(
            "SELECT generation FROM consumer_groups WHERE group_id = ?", (group_id,)
        ).fetchone()[0]
    )


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


def offsets_delete_by_topic(conn: sqlite3.Connection, group_id: int, topic_id: int) -> int:
    """Delete a group's committed offsets on one topic; return how many were deleted."""
    cursor = conn.execute(
        "DELETE FROM group_offsets WHERE group_id = ? AND topic_id = ?", (group_id, topic_id)
    )
    return int(cursor.rowcount)


def offsets_list_by_partition(
    conn: sqlite3.Connection, topic_id: int, partition: int
) -> list[tuple[str, int]]:
    """(group name, committed offset) of every group with an offset on one partition."""
    rows = conn.execute(
        "SELECT g.name, o.committed_offset FROM group_offsets AS o JOIN consumer_groups AS g "
        "ON g.group_id = o.group_id WHERE o.topic_id = ? AND o.partition = ?",
        (topic_id, partition),
    ).fetchall()
    return [(str(name), int(offset)) for name, offset in rows]


def offsets_find_by_topic(conn: sqlite3.Connection, group_id: int, topic_id: int) -> bool:
    """True when the group has committed an offset on some partition of the topic."""
    row = conn.execute(
        "SELECT 1 FROM group_offsets WHERE group_id = ? AND topic_id = ? LIMIT 1",
        (group_id, topic_id),
    ).fetchone()
    return row is not None
