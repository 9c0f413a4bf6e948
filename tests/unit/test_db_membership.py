"""pubsub.db.membership: members, leases and partition hand-over, as SQL on a real file.

Leases are plain numbers here (the boot-time clock is the caller's): each test says what
``now`` is.
"""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import catalog, groups
from pubsub.db import membership as m
from pubsub.db.connection import connect
from pubsub.db.transaction import WriteTransaction

BOOT = "boot-a"
SESSION = 10_000


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a database with topic ``t`` of 4 partitions and group ``g``."""
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=4)
    c = connect(str(db_path))
    with WriteTransaction(c, 1.0):
        groups.group_ensure(c, "g", 1)
    try:
        yield c
    finally:
        c.close()


def gid(conn: sqlite3.Connection) -> int:
    row = groups.group_get_by_name(conn, "g")
    group = None if row is None else row[0]
    assert group is not None
    return group


def tid(conn: sqlite3.Connection) -> int:
    row = catalog.topic_get_by_name(conn, "t")
    assert row is not None
    return row.topic_id


def join(conn: sqlite3.Connection, member: str, lease: int, boot: str = BOOT) -> None:
    row = m.MemberRow(member, json.dumps({"pid": 1}), '["t"]', SESSION, boot, lease, 0, 0)
    with WriteTransaction(conn, 1.0):
        m.member_insert(conn, gid(conn), row)


def owners(conn: sqlite3.Connection) -> dict[int, tuple[str | None, str | None]]:
    return {
        a.partition: (a.target_member, a.owner_member) for a in m.assignments_get(conn, gid(conn))
    }


def test_liveness_follows_the_lease_and_the_boot(conn: sqlite3.Connection) -> None:
    join(conn, "a", lease=1_000)
    join(conn, "b", lease=5_000)
    join(conn, "c", lease=5_000, boot="an-earlier-boot")
    join(conn, "d", lease=1_000_000)  # further ahead than a session: another clock base
    g = gid(conn)
    assert m.members_list_by_live_lease(conn, g, BOOT, 1_000) == ["a", "b"]
    assert m.members_list_by_live_lease(conn, g, BOOT, 1_001) == ["b"]
    assert m.members_count_by_live_lease(conn, g, BOOT, 5_001) == 0
    with WriteTransaction(conn, 1.0):
        assert sorted(m.members_expire(conn, g, BOOT, 1_001)) == ["a", "c", "d"]
    assert [row.member_id for row in m.members_get(conn, g)] == ["b"]


def test_renew_extends_a_lease_and_reports_a_vanished_member(conn: sqlite3.Connection) -> None:
    join(conn, "a", lease=1_000)
    g = gid(conn)
    with WriteTransaction(conn, 1.0):
        assert m.member_renew(conn, g, "a", BOOT, 9_000, now_ms=77) is True
        assert m.member_renew(conn, g, "gone", BOOT, 9_000, now_ms=77) is False
    (row,) = m.members_get(conn, g)
    assert (row.lease_expires, row.heartbeat_ms) == (9_000, 77)
    assert m.members_list_by_live_lease(conn, g, BOOT, 5_000) == ["a"]


def test_generation_bump_counts_up(conn: sqlite3.Connection) -> None:
    with WriteTransaction(conn, 1.0):
        first = groups.group_bump(conn, gid(conn))
        assert groups.group_bump(conn, gid(conn)) == first + 1


def test_hand_over_is_release_then_take(conn: sqlite3.Connection) -> None:
    """A partition retargeted to another member stays with its owner until the owner
    releases it; only then can the target take it."""
    join(conn, "a", lease=5_000)
    join(conn, "b", lease=5_000)
    g, t = gid(conn), tid(conn)
    with WriteTransaction(conn, 1.0):
        m.assignments_retarget(conn, g, {(t, p): "a" for p in range(4)})
        m.assignments_take(conn, g, "a", 10)
    assert owners(conn) == {p: ("a", "a") for p in range(4)}
    with WriteTransaction(conn, 1.0):
        m.assignments_retarget(conn, g, {(t, 0): "a", (t, 1): "a", (t, 2): "b", (t, 3): "b"})
        m.assignments_take(conn, g, "b", 20)  # a still owns them: nothing to take yet
    assert owners(conn)[2] == ("b", "a")
    assert m.assignments_wait_by_target(conn, g, "b", BOOT, 1_000) == 5_000  # a's lease
    assert m.assignments_wait_by_target(conn, g, "a", BOOT, 1_000) is None
    state = m.group_poll(conn, g, "a", BOOT, 1_000)
    assert state is not None and state.actionable == 2  # a must release two partitions
    with WriteTransaction(conn, 1.0):
        assert sorted(m.assignments_release(conn, g, "a")) == [(t, 2), (t, 3)]
        m.assignments_take(conn, g, "b", 30)
    assert owners(conn) == {0: ("a", "a"), 1: ("a", "a"), 2: ("b", "b"), 3: ("b", "b")}
    assert m.assignments_list_by_owner(conn, g, "b") == [(t, "t", 2), (t, "t", 3)]
    assert m.assignments_list_by_live_owner(conn, g, [(t, 0), (t, 3)], BOOT, 1_000) == {
        (t, 0): "a",
        (t, 3): "b",
    }
    assert m.assignments_list_by_live_owner(conn, g, [(t, 0)], BOOT, 6_000) == {}  # leases ran out


def test_a_deleted_owner_frees_its_partitions(conn: sqlite3.Connection) -> None:
    join(conn, "a", lease=5_000)
    join(conn, "b", lease=5_000)
    g, t = gid(conn), tid(conn)
    with WriteTransaction(conn, 1.0):
        m.assignments_retarget(conn, g, {(t, 0): "a"})
        m.assignments_take(conn, g, "a", 10)
        m.assignments_retarget(conn, g, {(t, 0): "b"})
    assert m.assignments_wait_by_target(conn, g, "b", BOOT, 1_000) == 5_000
    with WriteTransaction(conn, 1.0):
        assert m.member_delete(conn, g, "a") is True
        assert m.member_delete(conn, g, "a") is False
    assert owners(conn) == {0: ("b", None)}
    assert (
        m.assignments_wait_by_target(conn, g, "b", BOOT, 1_000) == 1_000
    )  # no live owner: take it now
    with WriteTransaction(conn, 1.0):
        m.assignments_take(conn, g, "b", 20)
    assert owners(conn) == {0: ("b", "b")}


def test_untargeted_free_partitions_are_forgotten(conn: sqlite3.Connection) -> None:
    join(conn, "a", lease=5_000)
    g, t = gid(conn), tid(conn)
    with WriteTransaction(conn, 1.0):
        m.assignments_retarget(conn, g, {(t, 0): "a", (t, 1): "a"})
        m.assignments_take(conn, g, "a", 10)
        m.assignments_retarget(conn, g, {(t, 0): "a"})
    assert owners(conn) == {0: ("a", "a"), 1: (None, "a")}  # still owned: kept until released
    with WriteTransaction(conn, 1.0):
        assert m.assignments_release(conn, g, "a") == [(t, 1)]
        m.assignments_retarget(conn, g, {(t, 0): "a"})
    assert owners(conn) == {0: ("a", "a")}


def test_sync_state_counts_foreign_members_and_the_earliest_lease(
    conn: sqlite3.Connection,
) -> None:
    join(conn, "a", lease=3_000)
    join(conn, "b", lease=2_000)
    join(conn, "c", lease=4_000, boot="an-earlier-boot")
    state = m.group_poll(conn, gid(conn), "a", BOOT, 1_000)
    assert state is not None
    assert (state.earliest_lease, state.foreign_members, state.actionable) == (2_000, 1, 0)
    assert m.group_poll(conn, gid(conn) + 100, "a", BOOT, 1_000) is None
