"""Group administration through the Broker: list, describe, plan and apply resets, delete.

Live members are real consumers with their own connections and a session far longer than
any test, so their leases never run out behind a test's back.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker, Consumer, TopicPartition
from pubsub.errors import (
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidArgumentError,
    TopicNotFoundError,
)
from pubsub.models import OffsetChange

NOW = 1_000_000  # the broker's clock, ms


@pytest.fixture
def admin(db_path: Path) -> Iterator[Broker]:
    """Topic ``t`` (2 partitions, records at ts 100..109 in p0 and 10 in p1) and ``u`` (1)."""
    with Broker(db_path, clock=lambda: NOW) as broker:
        broker.create_topic("t", partitions=2)
        broker.create_topic("u")
        for i in range(10):
            broker.produce("t", b"%d" % i, partition=0, timestamp=100 + i)
        broker.produce_batch("t", [b"x"] * 10, partition=1)
        broker.produce("u", b"u0")
        yield broker


def member(db_path: Path, topics: str | list[str] = "t", group: str = "g") -> Consumer:
    consumer = Consumer(db_path, topics, group=group, session_timeout=600, auto_commit=False)
    consumer.poll(timeout=5)  # joins and takes its partitions
    assert consumer.assignment
    return consumer


def committed(broker: Broker, group: str = "g") -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): o for tp, o in broker.committed_offsets(group).items()}


def test_list_groups(admin: Broker) -> None:
    assert admin.list_groups() == []
    admin.commit_offsets("b", {TopicPartition("t", 0): 4})
    admin.commit_offsets("a", {TopicPartition("u", 0): 1})
    listed = admin.list_groups()
    assert [g.name for g in listed] == ["a", "b"]
    assert all(g.state == "empty" and g.members == () for g in listed)
    b = listed[1]
    assert b.topics == ("t",)
    assert b.lag == 6  # partition 1 has no committed offset: no lag counted
    lags = {(p.topic, p.partition): (p.committed_offset, p.lag) for p in b.partitions}
    assert lags == {("t", 0): (4, 6), ("t", 1): (None, None)}


def test_describe_unknown_group(admin: Broker) -> None:
    with pytest.raises(GroupNotFoundError, match="'nope'"):
        admin.describe_group("nope")


def test_describe_shows_live_members_and_owners(db_path: Path, admin: Broker) -> None:
    consumer = member(db_path)
    try:
        info = admin.describe_group("g")
        assert info.state == "stable"
        assert info.live_members == 1
        (m,) = info.members
        assert m.member_id == consumer.member_id
        assert m.topics == ("t",)
        assert m.live and m.lease_remaining_ms is not None and m.lease_remaining_ms > 0
        assert set(m.partitions) == {TopicPartition("t", 0), TopicPartition("t", 1)}
        assert {p.owner for p in info.partitions} == {consumer.member_id}
        assert [(p.log_start_offset, p.log_end_offset) for p in info.partitions] == [
            (0, 10),
            (0, 10),
        ]
    finally:
        consumer.close()
    after = admin.describe_group("g")
    assert after.state == "empty"
    assert after.live_members == 0
    assert {p.owner for p in after.partitions} == {None}


def test_plan_each_strategy(admin: Broker) -> None:
    admin.commit_offsets("g", {TopicPartition("t", 0): 5, TopicPartition("t", 1): 2})

    def plan(strategy: str, value: int | None = None) -> list[tuple[int | None, int]]:
        changes = admin.plan_offset_reset(
            "g",
            strategy,  # type: ignore[arg-type]
            value=value,
        )
        assert [(c.topic, c.partition) for c in changes] == [("t", 0), ("t", 1)]
        return [(c.current_offset, c.new_offset) for c in changes]

    assert plan("to-earliest") == [(5, 0), (2, 0)]
    assert plan("to-latest") == [(5, 10), (2, 10)]
    assert plan("to-current") == [(5, 5), (2, 2)]
    assert plan("to-offset", 7) == [(5, 7), (2, 7)]
    assert plan("to-offset", 99) == [(5, 10), (2, 10)]  # clamped to the log
    assert plan("shift-by", -3) == [(5, 2), (2, 0)]
    assert plan("shift-by", 4) == [(5, 9), (2, 6)]
    assert plan("to-datetime", 104) == [(5, 4), (2, 0)]  # p1's records are at NOW
    assert plan("to-datetime", NOW + 1) == [(5, 10), (2, 10)]  # after everything: the end
    assert plan("by-duration", NOW - 107) == [(5, 7), (2, 0)]
    assert committed(admin) == {("t", 0): 5, ("t", 1): 2}  # a plan writes nothing


def test_plan_for_named_topics_and_partitions(admin: Broker) -> None:
    admin.commit_offsets("g", {TopicPartition("t", 0): 5})
    changes = admin.plan_offset_reset("g", "to-latest", topics={"t": [1], "u": None})
    assert changes == [OffsetChange("t", 1, None, 10), OffsetChange("u", 0, None, 1)]
    # A group that does not exist yet can be planned for, given its topics.
    assert admin.plan_offset_reset("new", "to-earliest", topics={"u": None}) == [
        OffsetChange("u", 0, None, 0)
    ]


def test_plan_refusals(admin: Broker) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown reset strategy"):
        admin.plan_offset_reset("g", "to-nowhere", topics={"t": None})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="needs a value"):
        admin.plan_offset_reset("g", "shift-by", topics={"t": None})
    with pytest.raises(GroupNotFoundError):
        admin.plan_offset_reset("g", "to-earliest")  # no offsets to say which topics
    with pytest.raises(TopicNotFoundError):
        admin.plan_offset_reset("g", "to-earliest", topics={"missing": None})
    with pytest.raises(InvalidArgumentError, match="no partition 2"):
        admin.plan_offset_reset("g", "to-earliest", topics={"t": [2]})


def test_reset_applies_the_plan_in_one_go(admin: Broker) -> None:
    admin.commit_offsets("g", {TopicPartition("t", 0): 5, TopicPartition("t", 1): 2})
    plan = admin.plan_offset_reset("g", "shift-by", value=3)
    admin.reset_offsets("g", plan)
    assert committed(admin) == {("t", 0): 8, ("t", 1): 5}
    # A plan naming a topic deleted since is refused whole: nothing is applied.
    admin.create_topic("gone")
    stale = [OffsetChange("t", 0, 8, 0), OffsetChange("gone", 0, None, 0)]
    admin.delete_topic("gone")
    with pytest.raises(TopicNotFoundError):
        admin.reset_offsets("g", stale)
    assert committed(admin) == {("t", 0): 8, ("t", 1): 5}


def test_reset_is_refused_while_members_live_unless_forced(db_path: Path, admin: Broker) -> None:
    consumer = member(db_path)
    try:
        plan = admin.plan_offset_reset("g", "to-latest", topics={"t": None})
        before = committed(admin)  # where the member started, if it recorded that
        with pytest.raises(GroupNotEmptyError, match="1 live member"):
            admin.reset_offsets("g", plan)
        assert committed(admin) == before
        assert before != {("t", 0): 10, ("t", 1): 10}
        admin.reset_offsets("g", plan, force=True)
        assert committed(admin) == {("t", 0): 10, ("t", 1): 10}
    finally:
        consumer.close()


def test_delete_group(db_path: Path, admin: Broker) -> None:
    with pytest.raises(GroupNotFoundError):
        admin.delete_group("g")
    consumer = member(db_path)
    try:
        with pytest.raises(GroupNotEmptyError, match="cannot be deleted"):
            admin.delete_group("g")
        assert [g.name for g in admin.list_groups()] == ["g"]
    finally:
        consumer.close()
    admin.commit_offsets("g", {TopicPartition("t", 0): 3})
    admin.delete_group("g")
    assert admin.list_groups() == []
    assert committed(admin) == {}


def test_delete_group_offsets_of_one_topic(db_path: Path, admin: Broker) -> None:
    admin.commit_offsets(
        "g", {TopicPartition("t", 0): 1, TopicPartition("t", 1): 2, TopicPartition("u", 0): 1}
    )
    with pytest.raises(GroupNotFoundError):
        admin.delete_group_offsets("other", "t")
    with pytest.raises(TopicNotFoundError):
        admin.delete_group_offsets("g", "missing")
    consumer = member(db_path, "u")
    try:
        with pytest.raises(GroupNotEmptyError, match="consumes 'u'"):
            admin.delete_group_offsets("g", "u")
        assert admin.delete_group_offsets("g", "t") == 2  # nobody live consumes t
    finally:
        consumer.close()
    assert committed(admin) == {("u", 0): 1}
    assert admin.delete_group_offsets("g", "t") == 0
    assert admin.delete_group_offsets("g", "u") == 1
    assert [g.name for g in admin.list_groups()] == ["g"]  # the group itself stays
