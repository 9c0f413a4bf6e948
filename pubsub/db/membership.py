"""SQL for consumer-group membership: members, leases, partition ownership, fenced commits.

Functions take a connection and never begin or commit. Writers run inside a write
transaction, so a member's view of the group and the change it makes are one atomic step.
"""

import sqlite3
from collections.abc import Iterable, Mapping
from typing import NamedTuple

PartitionKey = tuple[int, int]  # (topic_id, partition)

#: A member is live when its lease belongs to this boot, has not run out, and is not further
#: ahead than one session (a value from another clock base, e.g. before a reboot on a system
#: without a boot id). Used with the parameters :boot and :now; ``m`` is group_members.
LIVE = (
    "(m.boot_id = :boot AND m.lease_expires >= :now "
    "AND m.lease_expires <= :now + m.session_timeout_ms + 1000)"
)


class MemberRow(NamedTuple):
    """A row of ``group_members``."""

    member_id: str
    client: str
    topics: str
    session_timeout_ms: int
    boot_id: str
    lease_expires: int
    joined_ms: int
    heartbeat_ms: int


class AssignmentRow(NamedTuple):
    """A row of ``group_assignments`` with the topic's name."""

    topic_id: int
    topic: str
    partition: int
    target_member: str | None
    owner_member: str | None
    owned_since_ms: int | None


class SyncState(NamedTuple):
    """What a member reads on every poll to decide whether it must sync (one statement)."""

    generation: int
    earliest_lease: int | None  # earliest lease expiry among members of this boot
    foreign_members: int  # members whose lease belongs to another boot (expired)
    actionable: int  # partitions this member must release, or may take now


def member_insert(
    conn: sqlite3.Connection,
    group_id: int,
    member: MemberRow,
) -> None:
    """Add a member."""
    conn.execute(
        "INSERT INTO group_members (group_id, member_id, client, topics, session_timeout_ms, "
        "boot_id, lease_expires, joined_ms, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (group_id, *member),
    )


def member_renew(
    conn: sqlite3.Connection,
    group_id: int,
    member_id: str,
    boot_id: str,
    lease_expires: int,
    now_ms: int,
) -> bool:
    """Extend a member's lease; False if the member is gone (expired and removed)."""
    cursor = conn.execute(
        "UPDATE group_members SET boot_id = ?, lease_expires = ?, heartbeat_ms = ? "
        "WHERE group_id = ? AND member_id = ?",
        (boot_id, lease_expires, now_ms, group_id, member_id),
    )
    return cursor.rowcount > 0


def member_delete(conn: sqlite3.Connection, group_id: int, member_id: str) -> bool:
    """Remove a member and free what it owned; False if it was already gone."""
    cursor = conn.execute(
        "DELETE FROM group_members WHERE group_id = ? AND member_id = ?", (group_id, member_id)
    )
    conn.execute(
        "UPDATE group_assignments SET owner_member = NULL, owned_since_ms = NULL "
        "WHERE group_id = ? AND owner_member = ?",
        (group_id, member_id),
    )
    return cursor.rowcount > 0


def members_expire(
    conn: sqlite3.Connection, group_id: int, boot_id: str, now_lease: int
) -> list[str]:
    """Remove members that are not live (see :data:`LIVE`); return their ids."""
    expired = [
        row[0]
        for row in conn.execute(
            f"SELECT member_id FROM group_members AS m WHERE group_id = :group AND NOT {LIVE}",
            {"group": group_id, "boot": boot_id, "now": now_lease},
        )
    ]
    for member_id in expired:
        member_delete(conn, group_id, member_id)
    return expired


def members_get(conn: sqlite3.Connection, group_id: int) -> list[MemberRow]:
    """Every member of a group, by member id."""
    rows = conn.execute(
        "SELECT member_id, client, topics, session_timeout_ms, boot_id, lease_expires, "
        "joined_ms, heartbeat_ms FROM group_members WHERE group_id = ? ORDER BY member_id",
        (group_id,),
    ).fetchall()
    return [MemberRow(*row) for row in rows]


def assignments_get(conn: sqlite3.Connection, group_id: int) -> list[AssignmentRow]:
    """Every partition the group assigns, with its target and owner."""
    rows = conn.execute(
        "SELECT a.topic_id, t.name, a.partition, a.target_member, a.owner_member, "
        "a.owned_since_ms FROM group_assignments AS a JOIN topics AS t "
        "ON t.topic_id = a.topic_id WHERE a.group_id = ? ORDER BY t.name, a.partition",
        (group_id,),
    ).fetchall()
    return [AssignmentRow(*row) for row in rows]


def assignments_list_by_target(conn: sqlite3.Connection, group_id: int) -> list[PartitionKey]:
    """(topic_id, partition) of every partition the group targets at some member."""
    rows = conn.execute(
        "SELECT topic_id, partition FROM group_assignments "
        "WHERE group_id = ? AND target_member IS NOT NULL",
        (group_id,),
    ).fetchall()
    return [(int(topic_id), int(partition)) for topic_id, partition in rows]


def assignments_retarget(
    conn: sqlite3.Connection, group_id: int, targets: Mapping[PartitionKey, str]
) -> None:
    """Set every partition's target; partitions no longer subscribed get none."""
    conn.execute(
        "UPDATE group_assignments SET target_member = NULL WHERE group_id = ?", (group_id,)
    )
    conn.executemany(
        "INSERT INTO group_assignments (group_id, topic_id, partition, target_member) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic_id, partition) "
        "DO UPDATE SET target_member = excluded.target_member",
        [
            (group_id, topic_id, partition, member)
            for (topic_id, partition), member in targets.items()
        ],
    )
    conn.execute(
        "DELETE FROM group_assignments WHERE group_id = ? "
        "AND target_member IS NULL AND owner_member IS NULL",
        (group_id,),
    )


def assignments_release(
    conn: sqlite3.Connection, group_id: int, member_id: str
) -> list[PartitionKey]:
    """Give up the partitions this member owns but is no longer the target of."""
    released = [
        (row[0], row[1])
        for row in conn.execute(
            "SELECT topic_id, partition FROM group_assignments WHERE group_id = ? "
            "AND owner_member = ? AND (target_member IS NULL OR target_member != ?)",
            (group_id, member_id, member_id),
        )
    ]
    conn.executemany(
        "UPDATE group_assignments SET owner_member = NULL, owned_since_ms = NULL "
        "WHERE group_id = ? AND topic_id = ? AND partition = ?",
        [(group_id, topic_id, partition) for topic_id, partition in released],
    )
    return released


def assignments_take(conn: sqlite3.Connection, group_id: int, member_id: str, now_ms: int) -> None:
    """Take the partitions this member is the target of, where the owner is gone or none."""
    conn.execute(
        "UPDATE group_assignments SET owner_member = ?, owned_since_ms = ? "
        "WHERE group_id = ? AND target_member = ? AND (owner_member IS NULL OR owner_member "
        "NOT IN (SELECT member_id FROM group_members WHERE group_id = ?))",
        (member_id, now_ms, group_id, member_id, group_id),
    )


def assignments_list_by_owner(
    conn: sqlite3.Connection, group_id: int, member_id: str
) -> list[tuple[int, str, int]]:
    """(topic_id, topic, partition) of every partition this member owns."""
    rows = conn.execute(
        "SELECT a.topic_id, t.name, a.partition FROM group_assignments AS a "
        "JOIN topics AS t ON t.topic_id = a.topic_id "
        "WHERE a.group_id = ? AND a.owner_member = ? ORDER BY t.name, a.partition",
        (group_id, member_id),
    ).fetchall()
    return [(int(a), str(b), int(c)) for a, b, c in rows]


def group_poll(
    conn: sqlite3.Connection, group_id: int, member_id: str, boot_id: str, now_lease: int
) -> SyncState | None:
    """The cheap per-poll read; None if the group row is gone."""
    row = conn.execute(
        "SELECT g.generation, "
        "(SELECT min(m.lease_expires) FROM group_members AS m "
        f" WHERE m.group_id = g.group_id AND {LIVE}), "
        "(SELECT count(*) FROM group_members AS m "
        f" WHERE m.group_id = g.group_id AND NOT {LIVE}), "
        "(SELECT count(*) FROM group_assignments AS a WHERE a.group_id = g.group_id AND ("
        "  (a.owner_member = :me AND (a.target_member IS NULL OR a.target_member != :me))"
        "  OR (a.target_member = :me AND (a.owner_member IS NULL OR a.owner_member NOT IN "
        "      (SELECT member_id FROM group_members WHERE group_id = g.group_id))))) "
        "FROM consumer_groups AS g WHERE g.group_id = :group",
        {"boot": boot_id, "me": member_id, "group": group_id, "now": now_lease},
    ).fetchone()
    return SyncState(*row) if row is not None else None


def assignments_list_by_live_owner(
    conn: sqlite3.Connection,
    group_id: int,
    keys: Iterable[PartitionKey],
    boot_id: str,
    now_lease: int,
) -> dict[PartitionKey, str]:
    """The live member owning each of ``keys`` (partitions owned by nobody live are left out)."""
    wanted = set(keys)
    owners: dict[PartitionKey, str] = {}
    for topic_id, partition, owner in conn.execute(
        "SELECT a.topic_id, a.partition, a.owner_member FROM group_assignments AS a "
        "JOIN group_members AS m ON m.group_id = a.group_id AND m.member_id = a.owner_member "
        f"WHERE a.group_id = :group AND {LIVE}",
        {"group": group_id, "boot": boot_id, "now": now_lease},
    ):
        if (topic_id, partition) in wanted:
            owners[(topic_id, partition)] = owner
    return owners


def members_list_by_live_lease(
    conn: sqlite3.Connection, group_id: int, boot_id: str, now_lease: int
) -> list[str]:
    """Members whose lease has not run out."""
    rows = conn.execute(
        f"SELECT member_id FROM group_members AS m WHERE group_id = :group AND {LIVE} "
        "ORDER BY member_id",
        {"group": group_id, "boot": boot_id, "now": now_lease},
    ).fetchall()
    return [str(row[0]) for row in rows]


def members_count_by_live_lease(
    conn: sqlite3.Connection, group_id: int, boot_id: str, now_lease: int
) -> int:
    """How many members are live."""
    return len(members_list_by_live_lease(conn, group_id, boot_id, now_lease))


def assignments_wait_by_target(
    conn: sqlite3.Connection, group_id: int, member_id: str, boot_id: str, now_lease: int
) -> int | None:
    """For partitions targeted to this member but not owned by it: None if there are none,
    else the latest lease expiry among their live owners (``now_lease`` if none is live, so
    the next sync can take them at once)."""
    rows = conn.execute(
        "SELECT a.owner_member, m.lease_expires, "
        f"CASE WHEN m.member_id IS NOT NULL AND {LIVE} THEN 1 ELSE 0 END "
        "FROM group_assignments AS a LEFT JOIN group_members AS m "
        "ON m.group_id = a.group_id AND m.member_id = a.owner_member "
        "WHERE a.group_id = :group AND a.target_member = :me "
        "AND (a.owner_member IS NULL OR a.owner_member != :me)",
        {"group": group_id, "me": member_id, "boot": boot_id, "now": now_lease},
    ).fetchall()
    if not rows:
        return None
    leases = [int(lease) for _, lease, live in rows if live]
    return max(leases) if leases else now_lease
