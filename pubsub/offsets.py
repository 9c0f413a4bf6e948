"""Committed offsets of consumer groups, from outside a group's membership.

A member commits through its :class:`~pubsub.membership.Membership`, which checks that it
still owns the partitions; :meth:`Offsets.commit` is for everyone else (tools, a reset, a
consumer with an explicit assignment) and is refused for a partition a live member owns.
"""

import sqlite3
from collections.abc import Mapping

from pubsub.db import catalog
from pubsub.db.store import Store
from pubsub.errors import FencedError, InvalidArgumentError, TopicNotFoundError
from pubsub.records import TopicPartition
from pubsub.topics import Topics, check_partition_range

__all__ = ["Offsets"]


class Offsets:
    """Group offsets of one store."""

    __slots__ = ("store", "topics")

    def __init__(self, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics

    def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int] | Mapping[tuple[str, int], int],
        *,
        metadata: str | None = None,
    ) -> None:
        """Commit a group's offsets (the next offset the group will read) in one transaction.

        This is a commit from outside the group's membership: it is refused with
        :class:`~pubsub.errors.FencedError` for a partition a live member owns (members
        commit through their :class:`~pubsub.consumer.Consumer`).
        """
        with self.store.write() as conn:
            self.commit_in(conn, group, offsets, metadata=metadata)

    def commit_in(
        self,
        conn: sqlite3.Connection,
        group: str,
        offsets: Mapping[TopicPartition, int] | Mapping[tuple[str, int], int],
        *,
        metadata: str | None = None,
    ) -> None:
        """:meth:`commit_offsets` inside a write transaction the caller holds."""
        from pubsub import config as topic_config
        from pubsub.db import groups, membership

        topic_config.validate_name(group, "group")
        by_topic: dict[str, list[tuple[int, int]]] = {}
        for (topic, partition), offset in offsets.items():
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise InvalidArgumentError(
                    f"invalid offset {offset!r} for {topic}[{partition}]",
                    hint="a committed offset is the next offset to read: 0 or more",
                )
            by_topic.setdefault(topic, []).append((partition, offset))
        if not by_topic:
            return
        rows: list[tuple[int, int, int, str | None]] = []
        names: dict[tuple[int, int], str] = {}
        for topic, entries in by_topic.items():
            row = catalog.topic_get_by_name(conn, topic)
            if row is None:
                raise TopicNotFoundError(topic)
            for partition, offset in entries:
                check_partition_range(partition, row.partition_count, 0, record=False)
                rows.append((row.topic_id, partition, offset, metadata))
                names[(row.topic_id, partition)] = f"{topic}[{partition}]"
        group_id = groups.group_ensure(conn, group, self.store.now())
        owned = membership.assignments_list_by_live_owner(
            conn, group_id, names, self.store.boot_id, self.store.lease_now()
        )
        if owned:
            busy = ", ".join(f"{names[key]} (member {member})" for key, member in owned.items())
            raise FencedError(
                f"commit refused: live members of group {group!r} own {busy}",
                hint="members commit their own partitions; stop them first, or use "
                "'pubsub group reset-offsets' with --force",
            )
        groups.offsets_commit(conn, group_id, rows, self.store.now())

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """A group's committed offsets (all topics, or one)."""
        from pubsub.db import groups

        topic_id = None if topic is None else self.topics.meta(topic).topic_id
        with self.store.read():
            rows = groups.offsets_get(self.store.connection, group, topic_id)
        return {TopicPartition(r.topic, r.partition): r.committed_offset for r in rows}

    def committed_with_metadata(self, group: str) -> dict[TopicPartition, tuple[int, str | None]]:
        """A group's committed offsets with the metadata stored beside each one."""
        from pubsub.db import groups

        with self.store.read():
            rows = groups.offsets_get(self.store.connection, group)
        return {
            TopicPartition(r.topic, r.partition): (r.committed_offset, r.metadata) for r in rows
        }
