"""SQL for mirrors: the file's identity, a destination's positions, a source's progress.

``mirror_positions`` lives in a mirror's destination file and is written in the same
transaction as the records it forwards; ``mirror_progress`` lives in a mirror's source file
and is written after the destination committed (status and retention read it). Functions
take a connection and never begin or commit.
"""

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple


class PositionRow(NamedTuple):
    """A mirror's position in one source partition, as kept by its destination file."""

    mirror: str
    topic: str
    partition: int
    source_id: str
    source: str
    next_offset: int
    source_end: int
    skipped: int
    updated_ms: int


class ProgressRow(NamedTuple):
    """How far a mirror has forwarded one partition of this (source) file."""

    mirror: str
    topic: str
    partition: int
    destination: str
    forwarded_offset: int
    forwarded_ms: int | None
    skipped: int
    state: str
    updated_ms: int


def identity_get(conn: sqlite3.Connection) -> str:
    """This file's id (made by the migration that created the table)."""
    row = conn.execute("SELECT file_id FROM identity WHERE singleton = 1").fetchone()
    return str(row[0])


def mirror_positions_list(conn: sqlite3.Connection, mirror: str | None = None) -> list[PositionRow]:
    """The positions kept here, of one mirror or of all, by mirror, topic and partition."""
    sql = (
        "SELECT mirror, topic, partition, source_id, source, next_offset, source_end, skipped, "
        "updated_ms FROM mirror_positions"
    )
    if mirror is None:
        rows = conn.execute(sql + " ORDER BY mirror, topic, partition").fetchall()
    else:
        rows = conn.execute(
            sql + " WHERE mirror = ? ORDER BY topic, partition", (mirror,)
        ).fetchall()
    return [PositionRow(*row) for row in rows]


def mirror_positions_put(conn: sqlite3.Connection, rows: Iterable[PositionRow]) -> None:
    """Insert or update positions (inside the transaction that appends the records);
    ``skipped`` is added to the count stored."""
    conn.executemany(
        "INSERT INTO mirror_positions (mirror, topic, partition, source_id, source, next_offset, "
        "source_end, skipped, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (mirror, topic, partition) DO UPDATE SET source_id = excluded.source_id, "
        "source = excluded.source, next_offset = excluded.next_offset, "
        "source_end = excluded.source_end, skipped = skipped + excluded.skipped, "
        "updated_ms = excluded.updated_ms",
        rows,
    )


def mirror_progress_put(
    conn: sqlite3.Connection,
    rows: Iterable[tuple[str, int, int, str, int, int | None, int, str, int]],
) -> None:
    """Insert or update progress rows ``(mirror, topic_id, partition, destination,
    forwarded_offset, forwarded_ms, skipped, state, updated_ms)``; a forwarded offset never
    moves back, ``skipped`` is added to the count stored and a NULL ``forwarded_ms`` keeps
    the one stored."""
    conn.executemany(
        "INSERT INTO mirror_progress (mirror, topic_id, partition, destination, "
        "forwarded_offset, forwarded_ms, skipped, state, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (mirror, topic_id, partition) DO UPDATE SET "
        "destination = excluded.destination, "
        "forwarded_offset = max(forwarded_offset, excluded.forwarded_offset), "
        "forwarded_ms = coalesce(excluded.forwarded_ms, forwarded_ms), "
        "skipped = skipped + excluded.skipped, state = excluded.state, "
        "updated_ms = excluded.updated_ms",
        rows,
    )


def mirror_progress_update(conn: sqlite3.Connection, mirror: str, state: str, now_ms: int) -> int:
    """Set the state of every partition of ``mirror``; returns how many rows changed."""
    cursor = conn.execute(
        "UPDATE mirror_progress SET state = ?, updated_ms = ? WHERE mirror = ?",
        (state, now_ms, mirror),
    )
    return cursor.rowcount


def mirror_progress_list(conn: sqlite3.Connection, mirror: str | None = None) -> list[ProgressRow]:
    """Progress of the mirrors reading this file (of one, or all), with topic names."""
    sql = (
        "SELECT m.mirror, t.name, m.partition, m.destination, m.forwarded_offset, "
        "m.forwarded_ms, m.skipped, m.state, m.updated_ms "
        "FROM mirror_progress AS m JOIN topics AS t ON t.topic_id = m.topic_id"
    )
    if mirror is None:
        rows = conn.execute(sql + " ORDER BY m.mirror, t.name, m.partition").fetchall()
    else:
        rows = conn.execute(
            sql + " WHERE m.mirror = ? ORDER BY t.name, m.partition", (mirror,)
        ).fetchall()
    return [ProgressRow(*row) for row in rows]


def mirror_progress_min_by_partition(
    conn: sqlite3.Connection, topic_id: int, partition: int
) -> tuple[int, str] | None:
    """The lowest forwarded offset of any mirror of a partition and that mirror's name,
    None when no mirror reads it."""
    row = conn.execute(
        "SELECT forwarded_offset, mirror FROM mirror_progress "
        "WHERE topic_id = ? AND partition = ? ORDER BY forwarded_offset LIMIT 1",
        (topic_id, partition),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))
