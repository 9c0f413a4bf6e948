"""Share groups on one file: acquiring, locks on an injected lease clock, acknowledgements,
delivery limits, the dead-letter topic, the start offset and its bounded window."""

import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, ShareConsumer, ShareFencedError
from pubsub.db.migrations import load_migrations
from pubsub.db.migrations import schema_migrate as migrate
from pubsub.db.store import Clock, Store
from pubsub.errors import InvalidArgumentError
from pubsub.models import AcknowledgeType
from pubsub.records import TopicPartition
from pubsub.services import Services
from pubsub.shares import MAX_IN_FLIGHT, ShareGroups


class LeaseClock:
    """A lease clock the test moves by hand (ms)."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> LeaseClock:
    return LeaseClock()


def services(path: Path, clock: LeaseClock) -> Services:
    return Services(Store(path, clock=Clock(lease=clock, boot="test-boot")))


def make_topic(path: Path, n: int, partitions: int = 1) -> None:
    with Broker(path) as broker:
        broker.create_topic("jobs", partitions=partitions)
        if n:
            broker.produce_batch("jobs", [f"v{i}".encode() for i in range(n)], partition=0)


def describe(svc: Services, group: str = "g"):  # type: ignore[no-untyped-def]
    return ShareGroups(svc.store, svc.topics, svc.writer).describe(group)


def test_migration_creates_the_share_tables() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, busy_timeout=1)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"share_groups", "share_partitions", "share_records"} <= tables
    names = [m.name for m in load_migrations()]
    assert "share_groups" in names


def test_members_never_get_the_same_record(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 100)
    a = ShareConsumer(services(db, clock), "jobs", group="g")
    b = ShareConsumer(services(db, clock), "jobs", group="g")
    got_a = a.poll(0, 40)
    got_b = b.poll(0, 100)
    assert len(got_a) == 40 and len(got_b) == 60
    assert {r.offset for r in got_a}.isdisjoint({r.offset for r in got_b})
    assert all(r.delivery_count == 1 for r in got_a + got_b)
    assert b.poll(0) == []  # b's second poll accepted its 60; a still holds 40
    info = describe(a._services)
    assert info.partitions[0].start_offset == 0
    assert len(info.partitions[0].acquired) == 40
    a.close()  # releases what it still holds
    again = b.poll(0)
    assert sorted(r.offset for r in again) == list(range(40))
    assert all(r.delivery_count == 2 for r in again)
    b.close()


def test_accept_release_reject_and_the_start_offset(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 10)
    with ShareConsumer(services(db, clock), "jobs", group="g", max_deliveries=3) as c:
        records = c.poll(0, 10)
        c.acknowledge(records[0], "accept")
        c.acknowledge(records[1], AcknowledgeType.RELEASE)
        c.acknowledge(records[2], "reject")
        for r in records[3:]:
            c.acknowledge(r, "accept")
        c.commit()
        part = describe(c._services).partitions[0]
        assert part.start_offset == 1  # offset 1 is available again
        assert part.accepted == 8 and part.archived == 1
        (redelivered,) = c.poll(0)
        assert redelivered.offset == 1 and redelivered.delivery_count == 2
        c.acknowledge(redelivered, "accept")
        c.commit()
        part = describe(c._services).partitions[0]
        assert part.start_offset == 10 and part.available == 0
        with pytest.raises(InvalidArgumentError):
            c.acknowledge(redelivered, "accept")  # not held any more
        with pytest.raises(InvalidArgumentError):
            c.acknowledge(records[0], "maybe")


def test_an_expired_lock_goes_to_another_member_and_late_acks_are_refused(
    tmp_path: Path, clock: LeaseClock
) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 5)
    slow = ShareConsumer(services(db, clock), "jobs", group="g", lock_timeout=10)
    fast = ShareConsumer(services(db, clock), "jobs", group="g", lock_timeout=10)
    held = slow.poll(0)
    assert len(held) == 5 and fast.poll(0) == []
    clock.advance(5)
    slow.renew()  # 10 s from now
    clock.advance(9)
    assert fast.poll(0) == []
    clock.advance(2)
    taken = fast.poll(0)
    assert [r.delivery_count for r in taken] == [2] * 5
    for record in held:
        slow.acknowledge(record, "accept")
    with pytest.raises(ShareFencedError) as caught:
        slow.commit()
    assert sorted(o for _, _, o in caught.value.records) == [0, 1, 2, 3, 4]
    assert describe(fast._services).partitions[0].accepted == 0
    for record in taken:
        fast.acknowledge(record, "accept")
    fast.commit()
    assert describe(fast._services).partitions[0].accepted == 5
    slow.close()
    fast.close()


def test_max_deliveries_sends_to_the_dead_letter_topic(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 3)
    with ShareConsumer(
        services(db, clock), "jobs", group="g", max_deliveries=2, dead_letter="jobs-dlq"
    ) as c:
        first = c.poll(0)
        assert [r.delivery_count for r in first] == [1, 1, 1]
        c.acknowledge(first[0], "release", error="boom 1")
        c.acknowledge(first[1], "accept")
        c.acknowledge(first[2], "release")
        c.commit()
        second = c.poll(0)
        assert [(r.offset, r.delivery_count) for r in second] == [(0, 2), (2, 2)]
        c.acknowledge(second[0], "release", error="boom 2")  # the last delivery: rejected
        c.acknowledge(second[1], "release")
        c.commit()
        assert c.poll(0) == []
    with Broker(db) as broker:
        letters = broker.fetch("jobs-dlq", 0, 0)
    assert [r.value for r in letters] == [b"v0", b"v2"]
    headers = dict(letters[0].headers)
    assert headers["pubsub.attempts"] == b"2"
    assert headers["pubsub.error"] == b"boom 2"
    assert headers["pubsub.original.topic"] == b"jobs"
    assert headers["pubsub.original.partition"] == b"0"
    assert headers["pubsub.original.offset"] == b"0"


def test_an_expired_last_delivery_is_dead_lettered_by_the_next_member(
    tmp_path: Path, clock: LeaseClock
) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 1)
    opts = {"group": "g", "max_deliveries": 1, "dead_letter": "dlq", "lock_timeout": 1.0}
    dying = ShareConsumer(services(db, clock), "jobs", **opts)  # type: ignore[arg-type]
    assert len(dying.poll(0)) == 1
    clock.advance(2)
    other = ShareConsumer(services(db, clock), "jobs", **opts)  # type: ignore[arg-type]
    assert other.poll(0) == []
    with Broker(db) as broker:
        (letter,) = broker.fetch("dlq", 0, 0)
    assert dict(letter.headers)["pubsub.error"] == b"lock timed out on the last delivery"
    assert describe(other._services).partitions[0].start_offset == 1
    other.close()


def test_reset_latest_and_a_bounded_window(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, MAX_IN_FLIGHT + 100)
    with ShareConsumer(services(db, clock), "jobs", group="late", reset="latest") as c:
        assert c.poll(0) == []
    holder = ShareConsumer(services(db, clock), "jobs", group="g")
    assert [r.offset for r in holder.poll(0, 1)] == [0]  # held: the start offset stays at 0
    with ShareConsumer(services(db, clock), "jobs", group="g", max_poll_records=1000) as c:
        got = []
        while batch := c.poll(0):
            got.extend(batch)
        assert len(got) == MAX_IN_FLIGHT - 1  # the window is full behind offset 0
        with c._services.store.read():
            rows = c._services.store.connection.execute(
                "SELECT count(*) FROM share_records"
            ).fetchone()[0]
        assert rows <= MAX_IN_FLIGHT
    holder.close()


def test_iteration_accepts_implicitly_and_a_break_releases(
    tmp_path: Path, clock: LeaseClock
) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 6)
    seen = []
    with ShareConsumer(services(db, clock), "jobs", group="g", iter_timeout=0) as c:
        for record in c:
            seen.append(record.offset)
            if record.offset == 2:
                break
    with ShareConsumer(services(db, clock), "jobs", group="g", iter_timeout=0) as c:
        rest = [(r.offset, r.delivery_count) for r in c]
    assert seen == [0, 1, 2]
    # 2 was handed out and released at close; 3..5 were never handed out: no delivery counted
    assert rest == [(2, 2), (3, 1), (4, 1), (5, 1)]


def test_a_consumer_group_name_is_refused(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 1)
    with Broker(db) as broker:
        broker.commit_offsets("billing", {("jobs", 0): 0})
    with pytest.raises(InvalidArgumentError, match="consumer group"):
        ShareConsumer(services(db, clock), "jobs", group="billing").poll(0)


def test_retention_consumed_counts_share_groups(tmp_path: Path, clock: LeaseClock) -> None:
    db = tmp_path / "q.db"
    make_topic(db, 10)
    with ShareConsumer(services(db, clock), "jobs", group="g") as c:
        for r in c.poll(0, 4):
            c.acknowledge(r, "accept")
        c.commit()
    with Broker(db) as broker:
        broker.alter_topic("jobs", config={"retention.consumed": "true"})
        broker.run_retention()
        assert broker.watermarks("jobs")[0] == (4, 10)


def test_initialize_sets_start_offsets_once_without_acquiring(
    tmp_path: Path, clock: LeaseClock
) -> None:
    path = tmp_path / "init.db"
    make_topic(path, 5, partitions=2)
    svc = services(path, clock)
    shares = ShareGroups(svc.store, svc.topics, svc.writer)

    shares.initialize("g", [TopicPartition("jobs", 0)], "latest")
    [p0] = describe(svc).partitions
    assert (p0.partition, p0.start_offset, p0.acquired, p0.available) == (0, 5, (), 0)
    with Broker(path) as broker:
        broker.produce("jobs", b"later", partition=0)
    # Known partitions keep their start; a new one starts where asked.
    shares.initialize("g", [TopicPartition("jobs", 0), TopicPartition("jobs", 1)], "earliest")
    p0, p1 = describe(svc).partitions
    assert (p0.start_offset, p0.available, p1.start_offset) == (5, 1, 0)
    [record] = shares.acquire("g", "m", [TopicPartition("jobs", 0)], limit=10)
    assert (record.offset, record.value) == (5, b"later")
