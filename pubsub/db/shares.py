"""SQL for share groups: their partitions' start offsets, in-flight windows and record locks.

Only the in-flight window of a partition, ``[start_offset, end_offset)``, has rows in
``share_records`` (see migration 0004); every statement here touches one window, through the
primary key, so its cost does not depend on the length of the log. Functions take a
connection and never begin or commit; writers run inside a write transaction.
"""

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from pubsub.db.log import log_table

#: Record states, as stored.
AVAILABLE = 0
ACQUIRED = 1
ACKNOWLEDGED = 2
ARCHIVED = 4

#: A lock is held when it belongs to this boot, has not run out, and is not further ahead than
#: the longest lock (a value from another clock base, e.g. from before a reboot on a system
#: without a boot id). Parameters :boot, :now and :longest; ``r`` is share_records.
HELD = (
    "(r.state = 1 AND r.boot_id = :boot AND r.lock_expires >= :now "
    "AND r.lock_expires <= :now + :longest)"
)

_KEY = "r.share_group_id = :group AND r.topic_id = :topic AND r.partition = :partition"


class SharePartitionRow(NamedTuple):
    """A row of ``share_partitions`` with its topic's name."""

    topic_id: int
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    accepted_count: int
    archived_count: int
    updated_ms: int


class ShareRecordRow(NamedTuple):
    """A row of ``share_records`` (without its key)."""

    offset: int
    state: int
    delivery_count: int
    member_id: str | None
    boot_id: str | None
    lock_expires: int | None
    last_error: str | None


class LockParams(NamedTuple):
    """What decides whether a lock is held: this boot, the lease clock, the longest lock."""

    boot: str
    now: int
    longest: int


# -- groups ----------------------------------------------------------------------------------


def share_group_get(conn: sqlite3.Connection, name: str) -> int | None:
    """The id of the share group called ``name``, or None."""
    row = conn.execute("SELECT share_group_id FROM share_groups WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row is not None else None


def share_group_ensure(conn: sqlite3.Connection, name: str, now_ms: int) -> int:
    """The id of the share group ``name``, created if missing (inside a write transaction)."""
    group_id = share_group_get(conn, name)
    if group_id is not None:
        return group_id
    cursor = conn.execute(
        "INSERT INTO share_groups (name, created_ms) VALUES (?, ?)", (name, now_ms)
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def share_group_delete(conn: sqlite3.Connection, group_id: int) -> None:
    """Delete a share group with its partitions and records (ON DELETE CASCADE)."""
    conn.execute("DELETE FROM share_groups WHERE share_group_id = ?", (group_id,))


def share_groups_get(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
    """Every share group as (id, name, created_ms), by name."""
    return [
        (int(r[0]), str(r[1]), int(r[2]))
        for r in conn.execute(
            "SELECT share_group_id, name, created_ms FROM share_groups ORDER BY name"
        )
    ]


# -- partitions ------------------------------------------------------------------------------


def share_partition_get(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int
) -> tuple[int, int] | None:
    """(start_offset, end_offset) of a group's partition, or None before its first use."""
    row = conn.execute(
        "SELECT start_offset, end_offset FROM share_partitions "
        "WHERE share_group_id = ? AND topic_id = ? AND partition = ?",
        (group_id, topic_id, partition),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else None


def share_partition_insert(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int, start: int, now_ms: int
) -> None:
    """A group's first start offset in a partition (an empty window there)."""
    conn.execute(
        "INSERT INTO share_partitions (share_group_id, topic_id, partition, start_offset, "
        "end_offset, updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (group_id, topic_id, partition, start, start, now_ms),
    )


def share_partition_update(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    start: int,
    end: int,
    *,
    accepted: int = 0,
    archived: int = 0,
    now_ms: int,
) -> None:
    """Move a window, and count records that were accepted or archived."""
    conn.execute(
        "UPDATE share_partitions SET start_offset = ?, end_offset = ?, "
        "accepted_count = accepted_count + ?, archived_count = archived_count + ?, "
        "updated_ms = ? WHERE share_group_id = ? AND topic_id = ? AND partition = ?",
        (start, end, accepted, archived, now_ms, group_id, topic_id, partition),
    )


def share_partitions_get(conn: sqlite3.Connection, group_id: int) -> list[SharePartitionRow]:
    """A group's partitions with topic names, by topic and partition."""
    rows = conn.execute(
        "SELECT s.topic_id, t.name, s.partition, s.start_offset, s.end_offset, "
        "s.accepted_count, s.archived_count, s.updated_ms FROM share_partitions AS s "
        "JOIN topics AS t ON t.topic_id = s.topic_id WHERE s.share_group_id = ? "
        "ORDER BY t.name, s.partition",
        (group_id,),
    ).fetchall()
    return [SharePartitionRow(*row) for row in rows]


def share_partitions_delete_by_topic(
    conn: sqlite3.Connection, group_id: int, topic_id: int | None
) -> None:
    """Forget a group's partitions (of one topic, or all): they start afresh at next use."""
    if topic_id is None:
        conn.execute("DELETE FROM share_partitions WHERE share_group_id = ?", (group_id,))
    else:
        conn.execute(
            "DELETE FROM share_partitions WHERE share_group_id = ? AND topic_id = ?",
            (group_id, topic_id),
        )


def share_partitions_min_by_partition(
    conn: sqlite3.Connection, topic_id: int, partition: int
) -> int | None:
    """The lowest start offset of any share group in a partition (None: no share group)."""
    row = conn.execute(
        "SELECT min(start_offset) FROM share_partitions WHERE topic_id = ? AND partition = ?",
        (topic_id, partition),
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def share_partitions_list_by_topic(
    conn: sqlite3.Connection, topic_id: int
) -> list[tuple[str, int, int, int]]:
    """(group name, partition, start, end) of every share group reading a topic."""
    return [
        (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            "SELECT g.name, s.partition, s.start_offset, s.end_offset FROM share_partitions AS s "
            "JOIN share_groups AS g ON g.share_group_id = s.share_group_id "
            "WHERE s.topic_id = ? ORDER BY g.name, s.partition",
            (topic_id,),
        )
    ]


def partitions_find_by_share(
    conn: sqlite3.Connection, topic_id: int, partition: int
) -> tuple[int, int] | None:
    """A log partition's (log_start_offset, next_offset), or None if it is gone."""
    row = conn.execute(
        "SELECT log_start_offset, next_offset FROM partitions WHERE topic_id = ? AND partition = ?",
        (topic_id, partition),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else None


# -- records ---------------------------------------------------------------------------------


def _params(group_id: int, topic_id: int, partition: int, lock: LockParams) -> dict[str, object]:
    return {
        "group": group_id,
        "topic": topic_id,
        "partition": partition,
        "boot": lock.boot,
        "now": lock.now,
        "longest": lock.longest,
    }


def share_records_scan(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    lock: LockParams,
    limit: int,
) -> list[ShareRecordRow]:
    """Window rows another member may take: available, or acquired under a lock that is not
    held any more; oldest first, at most ``limit``."""
    rows = conn.execute(
        'SELECT r."offset", r.state, r.delivery_count, r.member_id, r.boot_id, '
        f"r.lock_expires, r.last_error FROM share_records AS r WHERE {_KEY} "
        f'AND (r.state = 0 OR (r.state = 1 AND NOT {HELD})) ORDER BY r."offset" LIMIT :limit',
        {**_params(group_id, topic_id, partition, lock), "limit": limit},
    ).fetchall()
    return [ShareRecordRow(*row) for row in rows]


def share_records_acquire(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    offsets: Iterable[int],
    member_id: str,
    boot_id: str,
    lock_expires: int,
) -> None:
    """Lock window rows for a member, one more delivery each."""
    conn.executemany(
        "UPDATE share_records SET state = 1, delivery_count = delivery_count + 1, "
        "member_id = ?, boot_id = ?, lock_expires = ? "
        'WHERE share_group_id = ? AND topic_id = ? AND partition = ? AND "offset" = ?',
        [
            (member_id, boot_id, lock_expires, group_id, topic_id, partition, offset)
            for offset in offsets
        ],
    )


def share_records_hold(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    offsets: Iterable[int],
    member_id: str,
    boot_id: str,
    lock_expires: int,
) -> None:
    """Records new to the window, acquired by a member (their first delivery)."""
    conn.executemany(
        'INSERT INTO share_records (share_group_id, topic_id, partition, "offset", state, '
        "delivery_count, member_id, boot_id, lock_expires) VALUES (?, ?, ?, ?, 1, 1, ?, ?, ?)",
        [
            (group_id, topic_id, partition, offset, member_id, boot_id, lock_expires)
            for offset in offsets
        ],
    )


def share_records_fill(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    offsets: tuple[int, int],
    member_id: str,
    boot_id: str,
    lock_expires: int,
) -> None:
    """The stored records of ``[first, end)`` enter the window, acquired by a member (their
    first delivery); one set-based statement over the partition's log table."""
    first, end = offsets
    conn.execute(
        'INSERT INTO share_records (share_group_id, topic_id, partition, "offset", state, '
        "delivery_count, member_id, boot_id, lock_expires) "
        f'SELECT ?, ?, ?, "offset", 1, 1, ?, ?, ? FROM {log_table(topic_id, partition)} '
        'WHERE "offset" >= ? AND "offset" < ?',
        (group_id, topic_id, partition, member_id, boot_id, lock_expires, first, end),
    )


def share_records_accept(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    runs: Iterable[tuple[int, int]],
) -> None:
    """Mark runs of records accepted: rows of (first, last offset), inclusive. The caller
    checked that this member holds every record of each run."""
    conn.executemany(
        "UPDATE share_records SET state = 2, member_id = NULL, boot_id = NULL, "
        "lock_expires = NULL WHERE share_group_id = ? AND topic_id = ? AND partition = ? "
        'AND "offset" BETWEEN ? AND ?',
        [(group_id, topic_id, partition, first, last) for first, last in runs],
    )


def share_records_list_by_member(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    member_id: str,
    lock: LockParams,
    offsets: Iterable[int],
) -> dict[int, int]:
    """Of ``offsets``, those whose lock ``member_id`` holds now: {offset: delivery count}."""
    params = _params(group_id, topic_id, partition, lock)
    params["member"] = member_id
    wanted = sorted(set(offsets))
    if not wanted:
        return {}
    params["low"], params["high"] = wanted[0], wanted[-1]
    found = {
        int(row[0]): int(row[1])
        for row in conn.execute(
            f'SELECT r."offset", r.delivery_count FROM share_records AS r WHERE {_KEY} '
            'AND r."offset" BETWEEN :low AND :high AND r.member_id = :member '
            f"AND {HELD}",
            params,
        )
    }
    chosen = set(wanted)
    return {offset: count for offset, count in found.items() if offset in chosen}


def share_records_set(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    changes: Iterable[tuple[int, int, str | None]],
) -> None:
    """Give records up: rows of (offset, new state, last error); the lock is cleared."""
    conn.executemany(
        "UPDATE share_records SET state = ?, member_id = NULL, boot_id = NULL, "
        "lock_expires = NULL, last_error = coalesce(?, last_error) "
        'WHERE share_group_id = ? AND topic_id = ? AND partition = ? AND "offset" = ?',
        [(state, error, group_id, topic_id, partition, offset) for offset, state, error in changes],
    )


def share_records_release(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    offsets: Iterable[int],
) -> None:
    """Give records back that were acquired but never handed out: available again, and this
    delivery does not count."""
    conn.executemany(
        "UPDATE share_records SET state = 0, member_id = NULL, boot_id = NULL, "
        "lock_expires = NULL, delivery_count = max(0, delivery_count - 1) "
        'WHERE share_group_id = ? AND topic_id = ? AND partition = ? AND "offset" = ?',
        [(group_id, topic_id, partition, offset) for offset in offsets],
    )


def share_records_renew(
    conn: sqlite3.Connection,
    group_id: int,
    topic_id: int,
    partition: int,
    member_id: str,
    lock: LockParams,
    offsets: Iterable[int],
    lock_expires: int,
) -> list[int]:
    """Extend the locks ``member_id`` still holds among ``offsets``; return those offsets."""
    held = share_records_list_by_member(
        conn, group_id, topic_id, partition, member_id, lock, offsets
    )
    conn.executemany(
        "UPDATE share_records SET lock_expires = ? "
        'WHERE share_group_id = ? AND topic_id = ? AND partition = ? AND "offset" = ?',
        [(lock_expires, group_id, topic_id, partition, offset) for offset in held],
    )
    return sorted(held)


def share_records_min(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int
) -> int | None:
    """The lowest window offset still to be delivered or decided (available or acquired)."""
    row = conn.execute(
        'SELECT min("offset") FROM share_records WHERE share_group_id = ? AND topic_id = ? '
        "AND partition = ? AND state IN (0, 1)",
        (group_id, topic_id, partition),
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def share_records_trim(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int, offset: int
) -> None:
    """Drop window rows below ``offset`` (the start offset moved past them)."""
    conn.execute(
        "DELETE FROM share_records WHERE share_group_id = ? AND topic_id = ? AND partition = ? "
        'AND "offset" < ?',
        (group_id, topic_id, partition, offset),
    )


def share_records_delete_by_offset(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int, offset: int
) -> None:
    """Drop window rows from ``offset`` on (a reset moved the end back)."""
    conn.execute(
        "DELETE FROM share_records WHERE share_group_id = ? AND topic_id = ? AND partition = ? "
        'AND "offset" >= ?',
        (group_id, topic_id, partition, offset),
    )


def share_records_wait(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int, lock: LockParams
) -> int | None:
    """The earliest expiry of a lock held in the window (lease clock, ms), or None."""
    row = conn.execute(
        f"SELECT min(r.lock_expires) FROM share_records AS r WHERE {_KEY} AND {HELD}",
        _params(group_id, topic_id, partition, lock),
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def share_records_get(
    conn: sqlite3.Connection, group_id: int, topic_id: int, partition: int
) -> list[ShareRecordRow]:
    """Every window row of a partition, by offset (for describe; the window is bounded)."""
    rows = conn.execute(
        'SELECT "offset", state, delivery_count, member_id, boot_id, lock_expires, last_error '
        "FROM share_records WHERE share_group_id = ? AND topic_id = ? AND partition = ? "
        'ORDER BY "offset"',
        (group_id, topic_id, partition),
    ).fetchall()
    return [ShareRecordRow(*row) for row in rows]


class ShareBacklogRow(NamedTuple):
    """A share group's partition with its log's offsets and its window's counts (stats)."""

    group: str
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    log_start_offset: int
    next_offset: int
    accepted_count: int
    archived_count: int
    undecided: int  # window rows at or above the start, available or acquired
    acquired: int  # of those, held under a live lock


def share_partitions_survey(conn: sqlite3.Connection, lock: LockParams) -> list[ShareBacklogRow]:
    """Every share group's partitions with the counts of their windows, by group, topic and
    partition: two range reads of one window each (bounded), never the log."""
    window = (
        "r.share_group_id = s.share_group_id AND r.topic_id = s.topic_id "
        'AND r.partition = s.partition AND r."offset" >= max(s.start_offset, p.log_start_offset)'
    )
    rows = conn.execute(
        "SELECT g.name, t.name, s.partition, s.start_offset, s.end_offset, p.log_start_offset, "
        "p.next_offset, s.accepted_count, s.archived_count, "
        f"(SELECT count(*) FROM share_records AS r WHERE {window} AND r.state IN (0, 1)), "
        f"(SELECT count(*) FROM share_records AS r WHERE {window} AND {HELD}) "
        "FROM share_partitions AS s "
        "JOIN share_groups AS g ON g.share_group_id = s.share_group_id "
        "JOIN topics AS t ON t.topic_id = s.topic_id "
        "JOIN partitions AS p ON p.topic_id = s.topic_id AND p.partition = s.partition "
        "ORDER BY g.name, t.name, s.partition",
        {"boot": lock.boot, "now": lock.now, "longest": lock.longest},
    ).fetchall()
    return [ShareBacklogRow(*row) for row in rows]


def share_records_count_by_group(conn: sqlite3.Connection, lock: LockParams) -> dict[str, int]:
    """Per share group name, the members holding a live lock now."""
    return {
        str(row[0]): int(row[1])
        for row in conn.execute(
            "SELECT g.name, count(DISTINCT r.member_id) FROM share_records AS r "
            "JOIN share_groups AS g ON g.share_group_id = r.share_group_id "
            f"WHERE {HELD} GROUP BY g.name",
            {"boot": lock.boot, "now": lock.now, "longest": lock.longest},
        )
    }
