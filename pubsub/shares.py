"""Share groups: records acquired under locks, acknowledged one by one (Kafka's KIP-932).

A share group reads its topics' partitions with any number of members at once. Each poll
*acquires* records for one member under a lock (the store's lease clock, tagged with its boot
id, as group leases are); while the lock is held no other member gets them. A member then
acknowledges each record: accept (done), release (deliver again, to anyone) or reject (never
again: to the dead-letter topic if there is one, else archived). A lock that runs out releases
its record; a record delivered ``max_deliveries`` times that fails again is rejected instead.

Per partition the group keeps a start offset (every record below it is accepted or archived)
and an in-flight window above it, at most :data:`MAX_IN_FLIGHT` offsets wide; only the window
has rows. Every statement reads one window through its primary key, so a poll costs the same
on a log of ten thousand records as on one of ten million, and producers never read these
tables. See docs/queues.md.
"""

import sqlite3
from collections.abc import Callable, Iterable
from typing import NamedTuple

from pubsub import config as topic_config
from pubsub.db import log
from pubsub.db import shares as sql
from pubsub.db.groups import group_get_by_name
from pubsub.db.store import Store
from pubsub.errors import (
    GroupNotFoundError,
    InvalidArgumentError,
    TopicDeletedError,
    TopicNotFoundError,
)
from pubsub.models import AcknowledgeType, OffsetReset, ShareGroupInfo, SharePartitionInfo
from pubsub.records import Message, ShareRecord, TopicPartition
from pubsub.topics import TopicMeta, Topics
from pubsub.writer import Writer

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_DELIVERIES",
    "MAX_IN_FLIGHT",
    "MAX_LOCK_TIMEOUT",
    "Acknowledgement",
    "ShareGroups",
    "lock_params",
]

#: Seconds a record stays locked to the member that acquired it (Kafka: 30 s).
DEFAULT_LOCK_TIMEOUT = 30.0
#: The longest lock (s): a lock further ahead than this is from another clock base.
MAX_LOCK_TIMEOUT = 3600.0
#: Deliveries after which a failing record is rejected (Kafka: 5).
DEFAULT_MAX_DELIVERIES = 5
#: The widest in-flight window of one partition (offsets from the start offset on). A record
#: held at the start keeps the window from moving further; a larger window costs more per poll.
MAX_IN_FLIGHT = 4000

_LONGEST_MS = int(MAX_LOCK_TIMEOUT * 1000) + 1000


def lock_params(store: Store) -> sql.LockParams:
    """What decides now whether a lock in ``store`` is held: its boot, its lease clock, the
    longest lock."""
    return sql.LockParams(store.boot_id, store.lease_now(), _LONGEST_MS)


class Acknowledgement(NamedTuple):
    """A record's acknowledgement waiting to be committed."""

    record: ShareRecord
    kind: AcknowledgeType
    error: str | None


class _Changed(Exception):
    """Records to dead-letter were fenced meanwhile: the transaction is rolled back."""

    def __init__(self, fenced: set[tuple[str, int, int]]) -> None:
        super().__init__("fenced")
        self.fenced = fenced


def validate_share_options(lock_timeout: float, max_deliveries: int) -> None:
    """Raise :class:`InvalidArgumentError` for a lock timeout or delivery limit out of range."""
    if not 0 < lock_timeout <= MAX_LOCK_TIMEOUT:
        raise InvalidArgumentError(
            f"invalid lock timeout {lock_timeout!r}",
            hint=f"use a positive number of seconds, at most {MAX_LOCK_TIMEOUT:g}",
        )
    if isinstance(max_deliveries, bool) or not 1 <= max_deliveries <= 1000:
        raise InvalidArgumentError(
            f"invalid max deliveries {max_deliveries!r}", hint="use 1 to 1000"
        )


def dead_letter_message(record: ShareRecord, group: str, error: str | None) -> Message:
    """The message a rejected record becomes in the dead-letter topic: its key, value and
    headers, and headers saying where it came from and why it failed."""
    headers = [
        *record.headers,
        ("pubsub.original.topic", record.topic.encode()),
        ("pubsub.original.partition", str(record.partition).encode()),
        ("pubsub.original.offset", str(record.offset).encode()),
        ("pubsub.original.timestamp", str(record.timestamp).encode()),
        ("pubsub.share.group", group.encode()),
        ("pubsub.attempts", str(record.delivery_count).encode()),
        ("pubsub.error", (error or "rejected").encode()),
    ]
    return Message(record.value, record.key, headers)


class ShareGroups:
    """The share groups of one store (see the module docstring)."""

    __slots__ = ("store", "topics", "writer")

    def __init__(self, store: Store, topics: Topics, writer: Writer) -> None:
        self.store = store
        self.topics = topics
        self.writer = writer

    def _lock(self) -> sql.LockParams:
        return lock_params(self.store)

    # -- acquiring -------------------------------------------------------------------------

    def acquire(
        self,
        group: str,
        member_id: str,
        partitions: list[TopicPartition],
        *,
        limit: int,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        reset: OffsetReset = "earliest",
        dead_letter: str | None = None,
        rotation: int = 0,
    ) -> list[ShareRecord]:
        """Acquire up to ``limit`` records of ``partitions`` for ``member_id`` (see
        :meth:`exchange`, without acknowledgements)."""
        records, _ = self.exchange(
            group,
            member_id,
            [],
            partitions,
            limit=limit,
            lock_timeout=lock_timeout,
            max_deliveries=max_deliveries,
            reset=reset,
            dead_letter=dead_letter,
            rotation=rotation,
        )
        return records

    def exchange(
        self,
        group: str,
        member_id: str,
        acks: list[Acknowledgement],
        partitions: list[TopicPartition],
        *,
        limit: int,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        reset: OffsetReset = "earliest",
        dead_letter: str | None = None,
        rotation: int = 0,
    ) -> tuple[list[ShareRecord], list[ShareRecord]]:
        """Apply ``acks`` and acquire up to ``limit`` records of ``partitions`` for
        ``member_id``, in one transaction (as Kafka's share fetch carries acknowledgements).
        Returns the records acquired and the acknowledged records that were refused because
        this member's lock on them ran out (the other acknowledgements are applied).

        Records released or whose lock ran out come first, in offset order. A partition the
        group has never read starts at ``reset``. A release of a record delivered
        ``max_deliveries`` times is a reject; a reject goes to ``dead_letter`` in the same
        transaction, when there is one. A record whose lock ran out after its last delivery is
        not delivered again: it goes to ``dead_letter`` (in the transaction that archives it)
        or is archived.
        """
        refused_before: set[tuple[str, int, int]] = set()
        for _attempt in range(5):
            live = [a for a in acks if _coordinates(a.record) not in refused_before]
            overdue: list[ShareRecord] = []
            try:
                records, refused = self._exchange_once(
                    group,
                    member_id,
                    live,
                    partitions,
                    limit,
                    lock_timeout,
                    max_deliveries,
                    reset,
                    dead_letter,
                    overdue,
                    rotation,
                )
            except _Changed as exc:
                refused_before |= exc.fenced
                continue
            refused.extend(a.record for a in acks if _coordinates(a.record) in refused_before)
            if overdue:
                assert dead_letter is not None
                self._dead_letter_overdue(group, dead_letter, overdue)
                if not records and not refused and limit > 0:
                    acks = []  # applied: look again for records to deliver
                    refused_before = set()
                    continue
            return records, refused
        raise InvalidArgumentError("the share group kept changing while polling; retry")

    def _exchange_once(
        self,
        group: str,
        member_id: str,
        acks: list[Acknowledgement],
        partitions: list[TopicPartition],
        limit: int,
        lock_timeout: float,
        max_deliveries: int,
        reset: OffsetReset,
        dead_letter: str | None,
        overdue: list[ShareRecord],
        rotation: int,
    ) -> tuple[list[ShareRecord], list[ShareRecord]]:
        metas = {tp.topic: self.topics.meta(tp.topic) for tp in partitions} if limit > 0 else {}
        count = len(partitions) if limit > 0 else 0
        order = [partitions[(rotation + i) % count] for i in range(count)]
        decided = _decide(acks, max_deliveries)
        letters = [
            (ack, dead_letter_message(ack.record, group, ack.error or _why(ack, max_deliveries)))
            for ack, state in decided
            if state == sql.ARCHIVED and dead_letter is not None
        ]
        records: list[ShareRecord] = []
        refused: list[ShareRecord] = []

        def work(conn: sqlite3.Connection) -> None:
            records.clear()
            refused.clear()
            overdue.clear()
            now_wall = self.store.now()
            lock = self._lock()
            if decided:
                refused.extend(
                    self._apply(conn, group, member_id, decided, letters, lock, now_wall)
                )
            if not order:
                return
            group_id = self._ensure_group(conn, group, now_wall)
            expires = lock.now + int(lock_timeout * 1000)
            for tp in order:
                budget = limit - len(records)
                if budget <= 0:
                    break
                records.extend(
                    self._acquire_partition(
                        conn,
                        group_id,
                        metas[tp.topic],
                        tp.partition,
                        budget,
                        member_id,
                        lock,
                        expires,
                        max_deliveries,
                        reset,
                        overdue if dead_letter is not None else None,
                        now_wall,
                    )
                )

        if letters:
            assert dead_letter is not None
            self.writer.produce_batch(dead_letter, [m for _, m in letters], inside=work)
        else:
            with self.store.write() as conn:
                work(conn)
        return records, refused

    def _apply(
        self,
        conn: sqlite3.Connection,
        group: str,
        member_id: str,
        decided: list[tuple[Acknowledgement, int]],
        letters: list[tuple[Acknowledgement, Message]],
        lock: sql.LockParams,
        now: int,
    ) -> list[ShareRecord]:
        """Apply acknowledgements of records this member still holds; return the others.

        Raises :class:`_Changed` (rolling the transaction back) when a record bound for the
        dead-letter topic is not held any more: it must not be written there.
        """
        lettered = {_coordinates(ack.record) for ack, _ in letters}
        group_id = sql.share_group_get(conn, group)
        if group_id is None:
            if lettered:
                raise _Changed(lettered)
            return [ack.record for ack, _ in decided]
        by_partition: dict[tuple[str, int], list[tuple[Acknowledgement, int]]] = {}
        for ack, state in decided:
            by_partition.setdefault((ack.record[0], ack.record[1]), []).append((ack, state))
        fenced: set[tuple[str, int, int]] = set()
        plans = []
        for (topic, partition), items in by_partition.items():
            try:
                meta = self.topics.meta(topic)
            except TopicNotFoundError:
                fenced.update(_coordinates(a.record) for a, _ in items)
                continue
            held = sql.share_records_list_by_member(
                conn,
                group_id,
                meta.topic_id,
                partition,
                member_id,
                lock,
                (a.record[2] for a, _ in items),
            )
            good = []
            for ack, state in items:
                if held.get(ack.record[2]) == ack.record.delivery_count:
                    good.append((ack, state))
                else:
                    fenced.add(_coordinates(ack.record))
            plans.append((meta, partition, good))
        if fenced & lettered:
            raise _Changed(fenced & lettered)
        for meta, partition, good in plans:
            if not good:
                continue
            accepted = [a.record[2] for a, state in good if state == sql.ACKNOWLEDGED]
            others = [
                (a.record[2], state, a.error) for a, state in good if state != sql.ACKNOWLEDGED
            ]
            if accepted:
                sql.share_records_accept(conn, group_id, meta.topic_id, partition, _runs(accepted))
            if others:
                sql.share_records_set(conn, group_id, meta.topic_id, partition, others)
            window = sql.share_partition_get(conn, group_id, meta.topic_id, partition)
            if window is None:
                continue
            archived = sum(1 for _, state, _ in others if state == sql.ARCHIVED)
            self._settle(
                conn, group_id, meta.topic_id, partition, *window, len(accepted), archived, now
            )
        return [ack.record for ack, _ in decided if _coordinates(ack.record) in fenced]

    def _ensure_group(self, conn: sqlite3.Connection, group: str, now_ms: int) -> int:
        group_id = sql.share_group_get(conn, group)
        if group_id is not None:
            return group_id
        if group_get_by_name(conn, group) is not None:
            raise InvalidArgumentError(
                f"{group!r} is a consumer group; a share group needs a name of its own",
                hint="choose another name for the share group",
            )
        return sql.share_group_ensure(conn, group, now_ms)

    def _acquire_partition(
        self,
        conn: sqlite3.Connection,
        group_id: int,
        meta: TopicMeta,
        partition: int,
        budget: int,
        member_id: str,
        lock: sql.LockParams,
        expires: int,
        max_deliveries: int,
        reset: OffsetReset,
        overdue: list[ShareRecord] | None,
        now_wall: int,
    ) -> list[ShareRecord]:
        topic_id = meta.topic_id
        marks = sql.partitions_find_by_share(conn, topic_id, partition)
        if marks is None:
            self.topics.forget(meta.name)
            raise TopicNotFoundError(meta.name)
        log_start, next_offset = marks
        window = sql.share_partition_get(conn, group_id, topic_id, partition)
        if window is None:
            first = log_start if reset == "earliest" else next_offset
            sql.share_partition_insert(conn, group_id, topic_id, partition, first, now_wall)
            window = (first, first)
        start, end = window
        archived = 0
        if start < log_start:  # retention deleted records the group had not decided
            sql.share_records_trim(conn, group_id, topic_id, partition, log_start)
            start, end = log_start, max(end, log_start)
        again: list[sql.ShareRecordRow] = []
        given_up: list[tuple[int, int, str | None]] = []
        if end > start:
            for row in sql.share_records_scan(
                conn, group_id, topic_id, partition, lock, budget + 64
            ):
                if row.state == sql.ACQUIRED and row.delivery_count >= max_deliveries:
                    if overdue is None:
                        given_up.append((row.offset, sql.ARCHIVED, "lock timed out"))
                        archived += 1
                    else:  # to the dead-letter topic, in a transaction of its own
                        overdue.append(self._share_record(conn, meta, partition, row))
                    continue
                if len(again) < budget:
                    again.append(row)
        if given_up:
            sql.share_records_set(conn, group_id, topic_id, partition, given_up)
        found: list[ShareRecord] = []
        if again:
            rows = _rows_at(conn, topic_id, partition, [row.offset for row in again])
            gone = [(row.offset, sql.ACKNOWLEDGED, None) for row in again if row.offset not in rows]
            if gone:  # compacted away meanwhile: nothing left to deliver
                sql.share_records_set(conn, group_id, topic_id, partition, gone)
            taken = [row for row in again if row.offset in rows]
            sql.share_records_acquire(
                conn,
                group_id,
                topic_id,
                partition,
                [row.offset for row in taken],
                member_id,
                lock.boot,
                expires,
            )
            found.extend(
                _share_record(meta.name, partition, rows[row.offset], row.delivery_count + 1)
                for row in taken
            )
        room = min(budget - len(found), MAX_IN_FLIGHT - (end - start))
        if room > 0 and end < next_offset:
            fresh = log.records_list_by_range(conn, topic_id, partition, end, next_offset, room)
            if fresh:
                sql.share_records_fill(
                    conn,
                    group_id,
                    topic_id,
                    partition,
                    (end, fresh[-1][0] + 1),
                    member_id,
                    lock.boot,
                    expires,
                )
                found.extend(_share_record(meta.name, partition, row, 1) for row in fresh)
            end = fresh[-1][0] + 1 if len(fresh) == room else next_offset
        self._settle(conn, group_id, topic_id, partition, start, end, 0, archived, now_wall)
        return found

    def _share_record(
        self, conn: sqlite3.Connection, meta: TopicMeta, partition: int, row: sql.ShareRecordRow
    ) -> ShareRecord:
        rows = _rows_at(conn, meta.topic_id, partition, [row.offset])
        stored = rows.get(row.offset, (row.offset, 0, None, None, None))
        return _share_record(meta.name, partition, stored, row.delivery_count)

    def _settle(
        self,
        conn: sqlite3.Connection,
        group_id: int,
        topic_id: int,
        partition: int,
        start: int,
        end: int,
        accepted: int,
        archived: int,
        now_ms: int,
    ) -> None:
        """Move the start offset past the decided prefix of the window, and save it."""
        first = sql.share_records_min(conn, group_id, topic_id, partition)
        new_start = first if first is not None else end
        if new_start > start:
            sql.share_records_trim(conn, group_id, topic_id, partition, new_start)
        sql.share_partition_update(
            conn,
            group_id,
            topic_id,
            partition,
            max(start, new_start),
            end,
            accepted=accepted,
            archived=archived,
            now_ms=now_ms,
        )

    def _dead_letter_overdue(
        self, group: str, dead_letter: str, overdue: list[ShareRecord]
    ) -> None:
        """Move records whose lock ran out after their last delivery to ``dead_letter`` and
        archive them, in one transaction (skipping any another member archived meanwhile)."""
        pending = list(overdue)
        for _attempt in range(5):
            if not pending:
                return
            messages = [
                dead_letter_message(r, group, "lock timed out on the last delivery")
                for r in pending
            ]
            chosen = pending

            def archive(conn: sqlite3.Connection, chosen: list[ShareRecord] = chosen) -> None:
                group_id = sql.share_group_get(conn, group)
                if group_id is None:
                    raise _Changed({_coordinates(r) for r in chosen})
                lock = self._lock()
                by_partition = _by_partition(chosen)
                changed: set[tuple[str, int, int]] = set()
                for (topic, partition), records in by_partition.items():
                    meta = self.topics.meta(topic)
                    still = {
                        (row.offset, row.delivery_count)
                        for row in sql.share_records_scan(
                            conn, group_id, meta.topic_id, partition, lock, MAX_IN_FLIGHT
                        )
                        if row.state == sql.ACQUIRED
                    }
                    changed.update(
                        _coordinates(r) for r in records if (r[2], r.delivery_count) not in still
                    )
                if changed:
                    raise _Changed(changed)
                now = self.store.now()
                for (topic, partition), records in by_partition.items():
                    meta = self.topics.meta(topic)
                    sql.share_records_set(
                        conn,
                        group_id,
                        meta.topic_id,
                        partition,
                        [(r[2], sql.ARCHIVED, "lock timed out") for r in records],
                    )
                    window = sql.share_partition_get(conn, group_id, meta.topic_id, partition)
                    assert window is not None
                    self._settle(
                        conn, group_id, meta.topic_id, partition, *window, 0, len(records), now
                    )

            try:
                self.writer.produce_batch(dead_letter, messages, inside=archive)
                return
            except _Changed as exc:
                pending = [r for r in pending if _coordinates(r) not in exc.fenced]

    def initialize(self, group: str, partitions: list[TopicPartition], reset: OffsetReset) -> None:
        """Create the group (if missing) and give each of ``partitions`` it has never read a
        start offset at ``reset``, without acquiring anything (as Kafka initialises a share
        partition when it is first assigned). Partitions the group knows are left as they are.
        """
        if not partitions:
            return
        metas = {tp.topic: self.topics.meta(tp.topic) for tp in partitions}
        with self.store.write() as conn:
            now = self.store.now()
            group_id = self._ensure_group(conn, group, now)
            for tp in partitions:
                topic_id = metas[tp.topic].topic_id
                if sql.share_partition_get(conn, group_id, topic_id, tp.partition) is not None:
                    continue
                marks = sql.partitions_find_by_share(conn, topic_id, tp.partition)
                if marks is None:
                    continue
                first = marks[0] if reset == "earliest" else marks[1]
                sql.share_partition_insert(conn, group_id, topic_id, tp.partition, first, now)

    # -- acknowledging ---------------------------------------------------------------------

    def acknowledge(
        self,
        group: str,
        member_id: str,
        acks: list[Acknowledgement],
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        dead_letter: str | None = None,
    ) -> list[ShareRecord]:
        """Apply acknowledgements in one transaction (see :meth:`exchange`); return the
        records refused because this member's lock on them ran out."""
        if not acks:
            return []
        _, refused = self.exchange(
            group,
            member_id,
            acks,
            [],
            limit=0,
            max_deliveries=max_deliveries,
            dead_letter=dead_letter,
        )
        return refused

    def renew(
        self, group: str, member_id: str, records: list[ShareRecord], lock_timeout: float
    ) -> list[ShareRecord]:
        """Extend this member's locks on ``records``; return those it no longer holds."""
        if not records:
            return []
        kept: set[tuple[str, int, int]] = set()
        with self.store.write() as conn:
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                return list(records)
            lock = self._lock()
            expires = lock.now + int(lock_timeout * 1000)
            for (topic, partition), items in _by_partition(records).items():
                meta = self.topics.meta(topic)
                for offset in sql.share_records_renew(
                    conn,
                    group_id,
                    meta.topic_id,
                    partition,
                    member_id,
                    lock,
                    (r.offset for r in items),
                    expires,
                ):
                    kept.add((topic, partition, offset))
        return [r for r in records if _coordinates(r) not in kept]

    def give_back(self, group: str, member_id: str, records: list[ShareRecord]) -> None:
        """Release records that were acquired but never handed out; their delivery does not
        count. Records whose lock ran out meanwhile are left as they are."""
        if not records:
            return
        with self.store.write() as conn:
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                return
            lock = self._lock()
            for (topic, partition), items in _by_partition(records).items():
                try:
                    meta = self.topics.meta(topic)
                except TopicNotFoundError:
                    continue
                held = sql.share_records_list_by_member(
                    conn,
                    group_id,
                    meta.topic_id,
                    partition,
                    member_id,
                    lock,
                    (r.offset for r in items),
                )
                sql.share_records_release(
                    conn,
                    group_id,
                    meta.topic_id,
                    partition,
                    [r.offset for r in items if held.get(r.offset) == r.delivery_count],
                )

    def next_expiry(self, group: str, partitions: list[TopicPartition]) -> float | None:
        """Seconds until the first lock held in these partitions runs out (None: no lock)."""
        with self.store.read():
            conn = self.store.connection
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                return None
            lock = self._lock()
            earliest: int | None = None
            for tp in partitions:
                meta = self.topics.meta(tp.topic)
                found = sql.share_records_wait(conn, group_id, meta.topic_id, tp.partition, lock)
                if found is not None and (earliest is None or found < earliest):
                    earliest = found
        if earliest is None:
            return None
        return max(0.0, (earliest - lock.now + 1) / 1000)

    # -- administration --------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of every share group."""
        with self.store.read():
            return [name for _, name, _ in sql.share_groups_get(self.store.connection)]

    def exists(self, group: str) -> bool:
        """True when a share group of that name exists."""
        with self.store.read():
            return sql.share_group_get(self.store.connection, group) is not None

    def describe(self, group: str) -> ShareGroupInfo:
        """A share group's partitions: start offsets, availability, locks, deliveries.

        Raises :class:`~pubsub.errors.GroupNotFoundError` for an unknown group.
        """
        with self.store.snapshot() as conn:
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                raise GroupNotFoundError(f"share group {group!r} does not exist")
            lock = self._lock()
            infos = []
            members: set[str] = set()
            for row in sql.share_partitions_get(conn, group_id):
                marks = sql.partitions_find_by_share(conn, row.topic_id, row.partition)
                log_start, next_offset = marks if marks is not None else (0, row.end_offset)
                start = max(row.start_offset, log_start)
                available = max(0, next_offset - max(row.end_offset, start))
                acquired = []
                deliveries: dict[int, int] = {}
                for rec in sql.share_records_get(conn, group_id, row.topic_id, row.partition):
                    if rec.offset < start:
                        continue
                    if rec.delivery_count:
                        deliveries[rec.delivery_count] = deliveries.get(rec.delivery_count, 0) + 1
                    held = (
                        rec.state == sql.ACQUIRED
                        and rec.boot_id == lock.boot
                        and rec.lock_expires is not None
                        and lock.now <= rec.lock_expires <= lock.now + lock.longest
                    )
                    if held:
                        assert rec.member_id is not None and rec.lock_expires is not None
                        members.add(rec.member_id)
                        acquired.append(
                            (
                                rec.offset,
                                rec.member_id,
                                rec.delivery_count,
                                (rec.lock_expires - lock.now) / 1000,
                            )
                        )
                    elif rec.state in (sql.AVAILABLE, sql.ACQUIRED):
                        available += 1
                infos.append(
                    SharePartitionInfo(
                        row.topic,
                        row.partition,
                        start,
                        max(row.end_offset, start),
                        next_offset,
                        available,
                        tuple(acquired),
                        dict(sorted(deliveries.items())),
                        row.accepted_count,
                        row.archived_count,
                    )
                )
        return ShareGroupInfo(group, tuple(infos), tuple(sorted(members)))

    def reset(
        self, group: str, topic: str | None, where: Callable[[int, int, int], int]
    ) -> list[tuple[str, int, int, int]]:
        """Move a group's start offsets: ``where(partition, log_start, next_offset)`` gives
        each one's new start; the window is emptied (locks too: do it with no member running).
        Returns (topic, partition, old start, new start)."""
        changes = []
        with self.store.write() as conn:
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                raise GroupNotFoundError(f"share group {group!r} does not exist")
            now = self.store.now()
            for row in sql.share_partitions_get(conn, group_id):
                if topic is not None and row.topic != topic:
                    continue
                marks = sql.partitions_find_by_share(conn, row.topic_id, row.partition)
                if marks is None:
                    continue
                new = min(max(where(row.partition, *marks), marks[0]), marks[1])
                sql.share_records_trim(conn, group_id, row.topic_id, row.partition, 2**62)
                sql.share_partition_update(
                    conn, group_id, row.topic_id, row.partition, new, new, now_ms=now
                )
                changes.append((row.topic, row.partition, row.start_offset, new))
        return changes

    def delete(self, group: str) -> None:
        """Delete a share group and everything it kept. Raises GroupNotFoundError."""
        with self.store.write() as conn:
            group_id = sql.share_group_get(conn, group)
            if group_id is None:
                raise GroupNotFoundError(f"share group {group!r} does not exist")
            sql.share_group_delete(conn, group_id)

    def validate_group(self, group: str) -> None:
        """Raise InvalidArgumentError for an invalid group name."""
        topic_config.validate_name(group, "group")


def _why(ack: Acknowledgement, max_deliveries: int) -> str:
    if ack.kind == AcknowledgeType.RELEASE:
        return f"released after {ack.record.delivery_count} of {max_deliveries} deliveries"
    return "rejected"


def _decide(acks: list[Acknowledgement], max_deliveries: int) -> list[tuple[Acknowledgement, int]]:
    """Each acknowledgement with the state it gives its record."""
    decided = []
    for ack in acks:
        kind = ack.kind
        if kind == AcknowledgeType.RELEASE and ack.record.delivery_count >= max_deliveries:
            kind = AcknowledgeType.REJECT
        decided.append((ack, _STATES[kind]))
    return decided


_STATES = {
    AcknowledgeType.ACCEPT: sql.ACKNOWLEDGED,
    AcknowledgeType.RELEASE: sql.AVAILABLE,
    AcknowledgeType.REJECT: sql.ARCHIVED,
}


def _runs(offsets: list[int]) -> list[tuple[int, int]]:
    """Sorted offsets as runs of consecutive ones: [(first, last), ...]."""
    runs: list[tuple[int, int]] = []
    for offset in sorted(offsets):
        if runs and runs[-1][1] == offset - 1:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


def _coordinates(record: ShareRecord) -> tuple[str, int, int]:
    return (record[0], record[1], record[2])


def _by_partition(records: Iterable[ShareRecord]) -> dict[tuple[str, int], list[ShareRecord]]:
    grouped: dict[tuple[str, int], list[ShareRecord]] = {}
    for record in records:
        grouped.setdefault((record[0], record[1]), []).append(record)
    return grouped


def _rows_at(
    conn: sqlite3.Connection, topic_id: int, partition: int, offsets: list[int]
) -> dict[int, log.RecordRow]:
    """The stored rows at ``offsets`` (one range read: they lie in one bounded window)."""
    if not offsets:
        return {}
    low, high = min(offsets), max(offsets)
    wanted = set(offsets)
    try:
        rows = log.records_list_by_range(conn, topic_id, partition, low, high + 1, high - low + 1)
    except sqlite3.OperationalError as exc:
        raise TopicDeletedError(str(exc)) from None
    return {row[0]: row for row in rows if row[0] in wanted}


def _share_record(topic: str, partition: int, row: log.RecordRow, count: int) -> ShareRecord:
    return tuple.__new__(ShareRecord, (topic, partition, *row, count))
