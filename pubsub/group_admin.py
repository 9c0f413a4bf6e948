"""Consumer-group administration: list, describe, reset offsets, delete.

The vocabulary is ``kafka-consumer-groups``': a reset is planned first (a dry run) and applied
only on request, and it is refused while the group has live members unless forced, because
those members would overwrite it with their next commit.
"""

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pubsub import config as topic_config
from pubsub.db import catalog, groups, log, membership
from pubsub.db.store import Store
from pubsub.db.transaction import ReadScope
from pubsub.errors import (
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidArgumentError,
    TopicNotFoundError,
)
from pubsub.models import (
    STRATEGIES,
    GroupInfo,
    MemberInfo,
    OffsetChange,
    PartitionLag,
    Strategy,
)
from pubsub.records import TopicPartition
from pubsub.words import counted

if TYPE_CHECKING:
    import sqlite3


def _describe(
    store: Store, conn: "sqlite3.Connection", name: str, group_id: int, generation: int
) -> GroupInfo:
    now_lease = store.lease_now()
    boot = store.boot_id
    assignments = membership.assignments_get(conn, group_id)
    owned_by: dict[str, list[TopicPartition]] = {}
    owner_of: dict[tuple[str, int], str] = {}
    rebalancing = False
    members_rows = membership.members_get(conn, group_id)
    live_ids = set(membership.members_list_by_live_lease(conn, group_id, boot, now_lease))
    for row in assignments:
        if row.owner_member is not None and row.owner_member in live_ids:
            owned_by.setdefault(row.owner_member, []).append(
                TopicPartition(row.topic, row.partition)
            )
            owner_of[(row.topic, row.partition)] = row.owner_member
        if row.target_member is not None and row.target_member != row.owner_member:
            rebalancing = True
    members = []
    subscribed: set[str] = set()
    for m in members_rows:
        client = json.loads(m.client)
        topics = tuple(json.loads(m.topics))
        subscribed.update(topics)
        members.append(
            MemberInfo(
                member_id=m.member_id,
                host=str(client.get("host", "")),
                pid=client.get("pid"),
                program=str(client.get("program", "")),
                topics=topics,
                joined_ms=m.joined_ms,
                heartbeat_ms=m.heartbeat_ms,
                lease_remaining_ms=m.lease_expires - now_lease if m.boot_id == boot else None,
                live=m.member_id in live_ids,
                partitions=tuple(owned_by.get(m.member_id, ())),
            )
        )
    committed = {(r.topic, r.partition): r.committed_offset for r in groups.offsets_get(conn, name)}
    topic_names = {t for t, _ in committed} | subscribed | {r.topic for r in assignments}
    partitions = []
    # One query for the watermarks of every topic involved (a group may span hundreds).
    for topic, part in catalog.partitions_list_by_topic_names(conn, topic_names):
        offset = committed.get((topic, part.partition))
        partitions.append(
            PartitionLag(
                topic=topic,
                partition=part.partition,
                committed_offset=offset,
                log_start_offset=part.log_start_offset,
                log_end_offset=part.next_offset,
                lag=None if offset is None else max(0, part.next_offset - offset),
                owner=owner_of.get((topic, part.partition)),
            )
        )
    state = "empty" if not live_ids else ("rebalancing" if rebalancing else "stable")
    return GroupInfo(name, state, generation, tuple(members), tuple(partitions))


def list_groups(store: Store) -> list[GroupInfo]:
    """Every group, by name."""
    with ReadScope(store.path):
        conn = store.connection
        return [
            _describe(store, conn, g.name, g.group_id, g.generation)
            for g in groups.group_list(conn)
        ]


def describe_group(store: Store, name: str) -> GroupInfo:
    """One group; :class:`~pubsub.errors.GroupNotFoundError` if it does not exist."""
    with ReadScope(store.path):
        conn = store.connection
        row = groups.group_get_by_name(conn, name)
        if row is None:
            raise _not_found(name)
        return _describe(store, conn, name, row.group_id, row.generation)


def _not_found(name: str) -> GroupNotFoundError:
    return GroupNotFoundError(
        f"group {name!r} does not exist", hint="list groups with 'pubsub group list'"
    )


def _refuse_live(
    store: Store, conn: "sqlite3.Connection", name: str, group_id: int, what: str
) -> None:
    live = membership.members_count_by_live_lease(conn, group_id, store.boot_id, store.lease_now())
    if live:
        raise GroupNotEmptyError(
            f"group {name!r} has {counted(live, 'live member')}; {what}",
            hint="stop its consumers first (or wait for their session timeout)",
        )


def plan_reset(
    store: Store,
    name: str,
    strategy: Strategy,
    *,
    topics: Mapping[str, Sequence[int] | None] | None = None,
    value: int | None = None,
) -> list[OffsetChange]:
    """What a reset would do: per partition, the current and the new committed offset.

    ``topics`` maps topic names to partitions (None: all of them); None means every topic the
    group has offsets for. ``value`` is the offset (to-offset), the shift (shift-by), the time
    in ms (to-datetime) or the duration in ms (by-duration). New offsets are clamped to the
    log's range; a partition without a committed offset counts as being at its log start.
    """
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(
            f"unknown reset strategy {strategy!r}", hint="use one of " + ", ".join(STRATEGIES)
        )
    if strategy in ("to-offset", "shift-by", "to-datetime", "by-duration") and value is None:
        raise InvalidArgumentError(f"--{strategy} needs a value")
    topic_config.validate_name(name, "group")
    with ReadScope(store.path):
        conn = store.connection
        group = groups.group_get_by_name(conn, name)
        committed = {
            (r.topic, r.partition): r.committed_offset for r in groups.offsets_get(conn, name)
        }
        if topics is None:
            if group is None:
                raise _not_found(name)
            topics = {topic: None for topic, _ in committed}
        plan: list[OffsetChange] = []
        now = store.now()
        for topic, wanted in sorted(topics.items()):
            row = catalog.topic_get_by_name(conn, topic)
            if row is None:
                raise TopicNotFoundError(topic)
            marks = {m.partition: m for m in catalog.partitions_get(conn, row.topic_id)}
            chosen = sorted(marks) if wanted is None else sorted(set(wanted))
            for partition in chosen:
                if partition not in marks:
                    raise InvalidArgumentError(
                        f"topic {topic!r} has no partition {partition}",
                        hint=f"partitions are 0 to {len(marks) - 1}",
                    )
                m = marks[partition]
                current = committed.get((topic, partition))
                base = current if current is not None else m.log_start_offset
                if strategy == "to-earliest":
                    new = m.log_start_offset
                elif strategy == "to-latest":
                    new = m.next_offset
                elif strategy == "to-offset":
                    assert value is not None
                    new = value
                elif strategy == "shift-by":
                    assert value is not None
                    new = base + value
                elif strategy == "to-current":
                    new = base
                else:
                    assert value is not None
                    when = value if strategy == "to-datetime" else now - value
                    found = log.time_index_find_by_timestamp(
                        conn, row.topic_id, partition, when, m.log_start_offset
                    )
                    new = m.next_offset if found is None else found
                new = min(max(new, m.log_start_offset), m.next_offset)
                plan.append(OffsetChange(topic, partition, current, new))
    return plan


def execute_reset(
    store: Store, name: str, plan: Sequence[OffsetChange], *, force: bool = False
) -> None:
    """Apply a reset plan in one transaction (refused with live members unless ``force``)."""
    with store.write() as conn:
        group_id = groups.group_ensure(conn, name, store.now())
        if not force:
            _refuse_live(store, conn, name, group_id, "a reset now would be undone by its commits")
        rows = []
        for change in plan:
            row = catalog.topic_get_by_name(conn, change.topic)
            if row is None:
                raise TopicNotFoundError(change.topic)
            rows.append((row.topic_id, change.partition, change.new_offset, None))
        groups.offsets_commit(conn, group_id, rows, store.now())


def delete_group(store: Store, name: str) -> None:
    """Delete a group and its offsets; refused while it has live members."""
    with store.write() as conn:
        row = groups.group_get_by_name(conn, name)
        if row is None:
            raise _not_found(name)
        _refuse_live(store, conn, name, row.group_id, "it cannot be deleted")
        groups.group_delete(conn, row.group_id)


def delete_group_offsets(store: Store, name: str, topic: str) -> int:
    """Delete a group's committed offsets on one topic; return how many were deleted.

    Refused while a live member subscribes to the topic.
    """
    with store.write() as conn:
        row = groups.group_get_by_name(conn, name)
        if row is None:
            raise _not_found(name)
        topic_row = catalog.topic_get_by_name(conn, topic)
        if topic_row is None:
            raise TopicNotFoundError(topic)
        live = set(
            membership.members_list_by_live_lease(
                conn, row.group_id, store.boot_id, store.lease_now()
            )
        )
        for member in membership.members_get(conn, row.group_id):
            if member.member_id in live and topic in json.loads(member.topics):
                raise GroupNotEmptyError(
                    f"live member {member.member_id} of group {name!r} consumes {topic!r}",
                    hint="stop its consumers first (or wait for their session timeout)",
                )
        return groups.offsets_delete_by_topic(conn, row.group_id, topic_row.topic_id)
