"""Group membership in one process: several consumers with their own connections to one file.

Leases use an injected boot-time clock so that expiry needs no sleeping; the session timeout is
long in real time, so heartbeat threads do not renew leases behind a test's back.
"""

import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, Consumer, FencedError, TopicPartition
from pubsub.db.store import boot_id, lease_clock_ms

SESSION = 60.0  # seconds; the fake clock jumps past it, real time never gets near it


class FakeLeaseClock:
    """Starts at the real lease clock, so that code reading the real one agrees until a jump."""

    def __init__(self) -> None:
        self.now = lease_clock_ms()

    def __call__(self) -> int:
        return self.now


def parts(consumer: Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment}


def member(db: Path, clock: FakeLeaseClock, **kwargs: object) -> Consumer:
    return Consumer(
        db,
        "t",
        group="g",
        session_timeout=SESSION,
        lease_clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def topic(db_path: Path) -> Path:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=6)
        for p in range(6):
            broker.produce_batch("t", [f"{p}-{i}".encode() for i in range(10)], partition=p)
    return db_path


# -- the assignor ----------------------------------------------------------------------------


# -- membership ------------------------------------------------------------------------------


def test_two_members_split_and_hand_over_cleanly(topic: Path) -> None:
    clock = FakeLeaseClock()
    a = member(topic, clock)
    assert parts(a) == set(range(6))
    records = a.poll(max_records=6)  # one record from each partition
    assert len(records) == 6
    b = member(topic, clock)
    assert parts(b) == set()  # a still owns everything until it polls
    a.poll(max_records=1)  # a releases three partitions, committing what it consumed
    assert len(parts(a)) == 3
    b.poll(timeout=0, max_records=1)
    assert parts(a).isdisjoint(parts(b)) and parts(a) | parts(b) == set(range(6))
    with Broker(topic) as broker:
        committed = broker.committed_offsets("g")
    for p in parts(b):
        assert committed[TopicPartition("t", p)] == 1  # b resumes after a's consumed record
        assert b.position(("t", p)) >= 1
    a.close()
    b.poll(timeout=0, max_records=1)
    assert parts(b) == set(range(6))
    b.close()


def test_three_members_are_balanced(topic: Path) -> None:
    clock = FakeLeaseClock()
    members = [member(topic, clock) for _ in range(3)]
    for _ in range(3):
        for consumer in members:
            consumer.poll(timeout=0, max_records=1)
    owned = [parts(c) for c in members]
    assert sorted(len(o) for o in owned) == [2, 2, 2]
    assert set().union(*owned) == set(range(6))
    for c in members:
        c.close()


def test_expired_member_is_replaced_and_fenced(topic: Path) -> None:
    clock = FakeLeaseClock()
    warnings: list[str] = []
    a = member(topic, clock, on_warning=warnings.append)
    a.poll(max_records=6)
    b = member(topic, clock)
    clock.now += int(SESSION * 1000) + 1  # a goes silent past its session timeout...
    with Broker(topic) as broker, broker.store.connection:
        broker.store.connection.execute(  # ...while b's lease is current
            "UPDATE group_members SET lease_expires = ? WHERE member_id = ?",
            (clock.now + 60_000, b.member_id),
        )
    b.poll(timeout=0, max_records=1)
    assert parts(b) == set(range(6))  # b removed a and took everything
    with pytest.raises(FencedError, match="no longer belong"):
        a.commit()
    # a notices on its next poll, rejoins as a new member and gets a share again.
    a.poll(timeout=0, max_records=1)
    assert warnings and "lease ran out" in warnings[0]
    b.poll(timeout=0, max_records=1)
    a.poll(timeout=0, max_records=1)
    assert parts(a).isdisjoint(parts(b)) and len(parts(a)) == 3
    a.close()
    b.close()


def test_lease_of_another_boot_is_expired(topic: Path) -> None:
    clock = FakeLeaseClock()
    a = member(topic, clock)
    with Broker(topic) as broker, broker.store.connection:
        broker.store.connection.execute("UPDATE group_members SET boot_id = 'a-previous-boot'")
    b = member(topic, clock)
    assert parts(b) == set(range(6))  # a's lease belonged to another boot
    assert b._membership is not None and b._membership.boot == boot_id()
    a.close()
    b.close()


def test_wall_clock_jumps_do_not_touch_leases(topic: Path) -> None:
    clock = FakeLeaseClock()
    past = Broker(topic, clock=lambda: 0)
    future = Broker(topic, clock=lambda: 10**15)
    a = Consumer(past, "t", group="g", session_timeout=SESSION, lease_clock=clock)
    b = Consumer(future, "t", group="g", session_timeout=SESSION, lease_clock=clock)
    a.poll(timeout=0)
    b.poll(timeout=0)
    assert len(parts(a)) == 3 and len(parts(b)) == 3  # nobody expired anybody
    a.close()
    b.close()
    past.close()
    future.close()


def test_outside_commit_is_refused_while_a_member_owns(topic: Path) -> None:
    clock = FakeLeaseClock()
    a = member(topic, clock)
    with Broker(topic) as broker:
        with pytest.raises(FencedError, match="live members"):
            broker.commit_offsets("g", {("t", 0): 5})
        a.close()
        broker.commit_offsets("g", {("t", 0): 5})  # nobody owns it now
        assert broker.committed_offsets("g")[("t", 0)] == 5


def test_new_owner_starts_at_the_committed_offset(topic: Path) -> None:
    with Broker(topic) as broker:
        broker.commit_offsets("g", {("t", p): 7 for p in range(6)})
    clock = FakeLeaseClock()
    a = member(topic, clock)
    got = []
    while records := a.poll():
        got.extend(records)
    assert sorted((r.partition, r.offset) for r in got) == [
        (p, o) for p in range(6) for o in (7, 8, 9)
    ]
    a.close()


def test_callbacks_report_assignment_changes(topic: Path) -> None:
    clock = FakeLeaseClock()
    events: list[tuple[str, list[int]]] = []
    a = member(
        topic,
        clock,
        on_assign=lambda tps: events.append(("assign", [tp.partition for tp in tps])),
        on_revoke=lambda tps: events.append(("revoke", [tp.partition for tp in tps])),
    )
    b = member(topic, clock)
    a.poll(timeout=0)
    assert events[0] == ("assign", [0, 1, 2, 3, 4, 5])
    assert events[1][0] == "revoke" and len(events[1][1]) == 3
    b.close()
    a.poll(timeout=0)
    assert events[2][0] == "assign" and sorted(events[2][1]) == sorted(events[1][1])
    a.close()


def test_send_and_commit_is_one_transaction(topic: Path) -> None:
    clock = FakeLeaseClock()
    with Broker(topic) as broker:
        broker.create_topic("dead")
    a = member(topic, clock)
    a.send_and_commit("dead", [b"moved"], {TopicPartition("t", 0): 3})
    with Broker(topic) as broker:
        assert broker.committed_offsets("g")[("t", 0)] == 3
        assert broker.latest_offset("dead", 0) == 1
    b = member(topic, clock)
    b.poll(timeout=0)
    a.poll(timeout=0)  # a hands three partitions to b
    lost = next(tp for tp in [TopicPartition("t", p) for p in range(6)] if tp not in a.assignment)
    with pytest.raises(FencedError):
        a.send_and_commit("dead", [b"twice"], {lost: 9})
    with Broker(topic) as broker:
        assert broker.latest_offset("dead", 0) == 1  # nothing produced when the commit fails
    a.close()
    b.close()


def test_manual_assignment_does_not_join(topic: Path) -> None:
    consumer = Consumer(topic, group="g", partitions=[("t", 2)])
    assert consumer.member_id is None and consumer.assignment == [("t", 2)]
    assert len(consumer.poll()) == 10
    consumer.close()
    with Broker(topic) as broker:
        assert broker.committed_offsets("g") == {("t", 2): 10}
        rows = broker.store.connection.execute("SELECT count(*) FROM group_members").fetchone()
        assert rows == (0,)


def test_memory_database_cannot_host_a_group() -> None:
    with Broker(":memory:") as broker:
        broker.create_topic("t")
        with pytest.raises(Exception, match="database file"):
            broker.consumer("t", group="g")


def test_membership_tables_are_cleaned_up(topic: Path) -> None:
    clock = FakeLeaseClock()
    a = member(topic, clock)
    a.close()
    conn = sqlite3.connect(topic)
    assert conn.execute("SELECT count(*) FROM group_members").fetchone() == (0,)
    owners = conn.execute("SELECT count(*) FROM group_assignments WHERE owner_member IS NOT NULL")
    assert owners.fetchone() == (0,)
    conn.close()


def test_auto_commit_after_a_lost_lease_rejoins(topic: Path) -> None:
    clock = FakeLeaseClock()
    warnings: list[str] = []
    a = member(topic, clock, auto_commit_interval=0, on_warning=warnings.append)
    a.poll(max_records=6)
    b = member(topic, clock)
    clock.now += int(SESSION * 1000) + 1
    with Broker(topic) as broker, broker.store.connection:
        broker.store.connection.execute(
            "UPDATE group_members SET lease_expires = ? WHERE member_id = ?",
            (clock.now + 60_000, b.member_id),
        )
    b.poll(timeout=0)
    assert parts(b) == set(range(6))
    old_id = a.member_id
    for _ in range(3):
        a.poll(timeout=0)  # never raises: the lost partitions are dropped before committing
        b.poll(timeout=0)
    assert a.member_id != old_id  # a new incarnation
    assert parts(a) and parts(a).isdisjoint(parts(b))
    assert any("lease ran out" in w for w in warnings)
    a.close()
    b.close()


def test_dead_member_does_not_block_outside_commits(topic: Path) -> None:
    clock = FakeLeaseClock()
    a = member(topic, clock)
    a._membership._heartbeat.stop()  # type: ignore[union-attr]
    with Broker(topic) as broker, broker.store.connection:
        broker.store.connection.execute("UPDATE group_members SET lease_expires = 0")  # it died
        broker.commit_offsets("g", {("t", 0): 5})
        assert broker.committed_offsets("g")[("t", 0)] == 5
        assert broker.describe_group("g").state == "empty"


def test_iteration_stopped_early_fetches_the_rest_again(topic: Path) -> None:
    with Broker(topic) as broker:
        consumer = broker.consumer(partitions=[("t", 0)], iter_timeout=0, max_poll_records=10)
        seen = []
        for record in consumer:
            seen.append(record.offset)
            if record.offset == 2:
                break
        seen.extend(record.offset for record in consumer)
        assert seen == list(range(10))


def test_deleted_and_recreated_topics(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("x")
        broker.create_topic("y")
        broker.produce_batch("x", [b"x"] * 2)
        broker.produce_batch("y", [b"old"] * 3)
    warnings: list[str] = []
    consumer = Consumer(
        db_path, ["x", "y"], group="g", session_timeout=SESSION, on_warning=warnings.append
    )
    assert len(consumer.poll()) == 5
    with Broker(db_path) as broker:
        broker.delete_topic("x")
        broker.delete_topic("y")
        broker.create_topic("y")
        broker.produce_batch("y", [b"new"] * 2)
    got = []
    for _ in range(4):
        got.extend(r.value for r in consumer.poll(timeout=0))
    assert got == [b"new", b"new"]  # the new y from its start; x dropped, not fatal
    assert consumer.assignment == [("y", 0)]
    consumer.close()
