"""Retention and compaction: one sweep applies every topic's policies once.

Policies (Kafka's keys, per topic, shown by ``topic describe``):

* ``retention.ms``: delete records older than this. Through the time index, the oldest record
  that must stay is found in O(log n); everything before it goes.
* ``retention.bytes``: per partition, delete the oldest records until the rest fits.
* ``retention.messages``: per partition, keep at most this many records.
* ``retention.consumed``: delete what every group reading the topic has committed past (a
  group that reads the topic but has no committed offset for a partition needs all of it; a
  topic no group reads keeps everything).
* ``cleanup.policy=compact`` (or ``compact,delete``): keep only the latest record per key; a
  tombstone (null value) goes after ``delete.retention.ms``. Surviving offsets never change;
  readers skip the holes.

The delete policies (the first four, with ``cleanup.policy`` containing ``delete``) remove a
prefix of each partition: the log start offset moves forward. Deletions run in short write
transactions sized to about 10 ms each and, because a deletion appends about as many bytes to
the WAL as it deletes, to at most a few MiB; producers and consumers keep going during a sweep
of millions of records, and a sweep killed midway leaves a consistent database that the next
one finishes. A lease in the database keeps two overlapping sweeps (cron) from running at
once. ``topic truncate`` (:func:`truncate`) deletes a prefix the same way.

The plan (the offset each policy deletes below) is made before anything is written: a sweep
that deletes nothing writes nothing and leaves the reserve file alone. On a full disk, or one
low on space, deleting needs room first: see :mod:`pubsub.space` for the order of the work
(reserve released, checkpoints that fit, transactions sized to the room left, a vacuum, the
reserve put back as soon as there is room).
"""

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import NamedTuple

from pubsub.config import effective_config
from pubsub.db import catalog, groups, membership
from pubsub.db import retention as sql
from pubsub.db.files import LOW_SPACE_BYTES, low_on_space
from pubsub.db.store import Store
from pubsub.db.transaction import ReadScope
from pubsub.errors import (
    InvalidArgumentError,
    OffsetOutOfRangeError,
    StorageError,
    TopicNotFoundError,
)
from pubsub.models import PartitionReport
from pubsub.space import Room, cap_wal, checkpoint_fits, incremental_vacuum

#: Aim for write transactions of about this long, so that producers wait little.
TARGET_BATCH_SECONDS = 0.01
#: Pause between two of the sweep's transactions, so that writers polling for the lock
#: (every millisecond at most) get it before the sweep takes it again.
YIELD_SECONDS = 0.002
#: A retention lease not renewed for this long is taken over by the next sweep.
LEASE_MS = 60_000
#: The WAL is checkpointed and truncated after a sweep that left it larger than this.
DEFAULT_WAL_CAP = 64 * 1024 * 1024
LEASE_NAME = "retention"
#: On a low disk, a partition losing every record is cleared in one transaction up to this size.
CLEAR_MAX_BYTES = 64 * 1024 * 1024

__all__ = [
    "PartitionReport",
    "RetentionReport",
    "Sweeper",
    "cap_wal",
    "delete_prefix",
    "incremental_vacuum",
    "truncate",
]


class RetentionReport(NamedTuple):
    """The result of :meth:`Sweeper.run`."""

    partitions: tuple[PartitionReport, ...]
    dry_run: bool
    started_ms: int
    finished_ms: int
    vacuumed_pages: int
    wal_checkpointed: bool
    skipped: str | None  # why nothing ran (another sweep holds the lease)
    #: The disk was full: the sweep released the reserve file to make room for its work.
    reserve_released: bool = False
    #: The file system had less free space than the reserve's size when the sweep started.
    disk_full: bool = False
    #: What ``retention.hold.mirrors`` kept: one sentence per partition held back.
    held: tuple[str, ...] = ()

    @property
    def deleted_records(self) -> int:
        """Records deleted in all partitions."""
        return sum(p.deleted_records for p in self.partitions)

    @property
    def deleted_bytes(self) -> int:
        """Bytes of keys, values and headers deleted in all partitions."""
        return sum(p.deleted_bytes for p in self.partitions)


class _Batcher:
    """Sizes write transactions so that each takes about TARGET_BATCH_SECONDS (in records;
    :class:`~pubsub.space.Room` caps them in bytes)."""

    def __init__(self, rows: int = 2000) -> None:
        self.rows = rows

    def measured(self, rows: int, seconds: float) -> None:
        if rows <= 0 or seconds <= 0:
            return
        ideal = rows * TARGET_BATCH_SECONDS / seconds
        self.rows = int(min(200_000, max(100, (self.rows + ideal) / 2)))


class _Work(NamedTuple):
    """The plan for one partition, made before anything is written."""

    topic: str
    topic_id: int
    partition: int
    config: dict[str, str]
    log_start_offset: int
    target: int  # the delete policies remove every offset below this
    reasons: tuple[str, ...]
    compact: bool  # the topic is compacted
    next_offset: int
    byte_count: int

    @property
    def deletes(self) -> bool:
        return self.target > self.log_start_offset

    @property
    def clears(self) -> bool:
        """Every record goes (and few enough to clear in one transaction on a low disk)."""
        return self.target >= self.next_offset and self.byte_count <= CLEAR_MAX_BYTES


def delete_prefix(
    store: Store,
    room: Room,
    topic_id: int,
    partition: int,
    target: int,
    *,
    batcher: _Batcher | None = None,
    inside: Callable[[sqlite3.Connection], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[int, int]:
    """Delete every record of a partition below ``target`` in short transactions, moving its
    log start to ``target``; (records, bytes) deleted.

    Each transaction deletes what takes about 10 ms and at most ``room.budget()`` bytes (its
    WAL frames are about as large), runs ``inside(conn)`` too (a lease renewal), and is
    followed by ``room.settle()``. On a low disk a partition that loses every record (and
    holds at most :data:`CLEAR_MAX_BYTES`) is cleared in one transaction that writes almost
    nothing to the WAL.
    """
    batcher = batcher or _Batcher()
    records = size = 0
    first: int | None = None

    def step(conn: sqlite3.Connection) -> tuple[int, int, int, int] | None:
        """One transaction: (its first offset, the new log start, records, bytes)."""
        state = catalog.partition_get(conn, topic_id, partition)
        if state is None or state.log_start_offset >= target:
            return None
        low = state.log_start_offset
        if room.low and target >= state.next_offset and state.byte_count <= CLEAR_MAX_BYTES:
            count, nbytes, end = state.record_count, state.byte_count, target
            sql.records_delete(conn, topic_id, partition)
        else:
            chunk = sql.records_chunk(
                conn, topic_id, partition, low, target, batcher.rows, room.budget()
            )
            count, nbytes, end = chunk.records, chunk.bytes, chunk.end
            if count:
                sql.records_delete_by_range(conn, topic_id, partition, low, end)
        sql.partition_shrink(conn, topic_id, partition, count, nbytes, end)
        sql.time_index_prune(conn, topic_id, partition, end)
        if inside is not None:
            inside(conn)
        return low, end, count, nbytes

    while True:
        began = time.monotonic()
        done = room.run(step)  # retried on a full disk: count only what committed
        if done is None:
            break
        low, end, count, nbytes = done
        first = low if first is None else first
        records += count
        size += nbytes
        batcher.measured(count, time.monotonic() - began)
        room.settle()
        if progress is not None:
            progress((end - first) / max(1, target - first))
        time.sleep(YIELD_SECONDS)
    return records, size


class Sweeper:
    """Applies retention and compaction to every partition of the chosen topics."""

    def __init__(
        self,
        store: Store,
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        wal_cap: int = DEFAULT_WAL_CAP,
        lease_clock: Callable[[], int] | None = None,
        progress: Callable[[float, float, str], None] | None = None,
    ) -> None:
        self.store = store
        #: Called with (partitions done, partitions in all, what now) as the sweep moves on;
        #: within a partition the first number grows with the share of the prefix deleted.
        self._progress = progress or (lambda done, total, what: None)
        self._done = 0.0
        self._total = 0.0
        self.dry_run = dry_run
        self.vacuum = vacuum
        self.wal_cap = wal_cap
        self._lease_clock = lease_clock or store.clock.lease
        self._holder = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "run": secrets.token_hex(4)}
        )
        self._batcher = _Batcher()
        self._held: list[str] = []

    # -- the lease ---------------------------------------------------------------------------

    def _take_lease(self, room: Room | None = None) -> str | None:
        """Take the sweep lease; return why not if another live sweep holds it."""

        def take(conn: sqlite3.Connection) -> str | None:
            current = sql.lease_get(conn, LEASE_NAME)
            if (
                current is not None
                and current.holder != self._holder
                and _holder_alive(current, self._lease_clock(), self.store.boot_id)
            ):
                holder = json.loads(current.holder)
                return (
                    f"another retention run is in progress (pid {holder.get('pid')} on "
                    f"{holder.get('host')})"
                )
            self._renew(conn)
            return None

        return (room or Room(self.store)).run(take)

    def _renew(self, conn: sqlite3.Connection) -> None:
        sql.lease_put(
            conn, LEASE_NAME, self._holder, self.store.boot_id, self._lease_clock() + LEASE_MS
        )

    def _release_lease(self, room: Room | None = None) -> None:
        (room or Room(self.store)).run(
            lambda conn: sql.lease_delete(conn, LEASE_NAME, self._holder)
        )

    # -- the sweep ---------------------------------------------------------------------------

    def run(self, topics: Iterable[str] | None = None) -> RetentionReport:
        """Apply the policies once; with ``dry_run`` only report what would go.

        The plan (what each policy deletes) is made first, without writing. When it deletes
        nothing, nothing is written and the reserve file stays. On a file system low on space
        the sweep works as :mod:`pubsub.space` describes: the reserve released if the disk is
        full, checkpoints that fit, transactions sized to the room left, a vacuum at the end,
        and the reserve put back as soon as there is room for it.
        """
        report = self._run(topics)
        return report._replace(held=tuple(self._held)) if self._held else report

    def _run(self, topics: Iterable[str] | None) -> RetentionReport:
        store = self.store
        started = store.now()
        self._held = []
        plan = self._plan(topics)
        self._total = float(len(plan))
        if self.dry_run:
            return self._dry_report(plan, started)
        room = Room(store)
        try:
            if not self._has_work(plan, room):
                return self._nothing_to_do(plan, room, started)
            deleting = [work for work in plan if work.deletes or work.compact]
            room.start(deletes=True, clears=all(work.clears for work in deleting))
            return self._sweep(plan, room, started)
        finally:
            room.close()

    def _plan(self, topics: Iterable[str] | None) -> list[_Work]:
        store = self.store
        conn = store.connection
        plan: list[_Work] = []
        with ReadScope(store.path):
            if topics is None:
                rows = catalog.topic_list(conn)
            else:
                rows = []
                for name in dict.fromkeys(topics):
                    row = catalog.topic_get_by_name(conn, name)
                    if row is None:
                        raise TopicNotFoundError(name)
                    rows.append(row)
            for row in rows:
                config = effective_config(catalog.configs_get(conn, row.topic_id))
                policies = set(config["cleanup.policy"].split(","))
                for partition in range(row.partition_count):
                    state = catalog.partition_get(conn, row.topic_id, partition)
                    if state is None:
                        continue
                    target, reasons = (
                        self._delete_target(row.name, row.topic_id, state, config)
                        if "delete" in policies
                        else (state.log_start_offset, [])
                    )
                    plan.append(
                        _Work(
                            row.name,
                            row.topic_id,
                            partition,
                            config,
                            state.log_start_offset,
                            target,
                            tuple(reasons),
                            "compact" in policies,
                            state.next_offset,
                            state.byte_count,
                        )
                    )
        return plan

    def _has_work(self, plan: list[_Work], room: Room) -> bool:
        """True when the plan deletes something (compaction may delete nothing: on a low disk,
        where the reserve is at stake, its estimate decides)."""
        if any(work.deletes for work in plan):
            return True
        compacted = [work for work in plan if work.compact]
        if not compacted:
            return False
        if not low_on_space(self.store.path, LOW_SPACE_BYTES):
            return True
        return any(self._compaction_size(work)[0] for work in compacted)

    def _compaction_size(self, work: _Work) -> tuple[int, int]:
        conn = self.store.connection
        with ReadScope(self.store.path):
            state = catalog.partition_get(conn, work.topic_id, work.partition)
            if state is None:
                return 0, 0
            low = max(state.cleaned_offset, state.log_start_offset)
            cutoff = self.store.now() - int(work.config["delete.retention.ms"])
            return sql.records_estimate(
                conn, work.topic_id, work.partition, low, state.next_offset, cutoff
            )

    def _dry_report(self, plan: list[_Work], started: int) -> RetentionReport:
        conn = self.store.connection
        reports = []
        for work in plan:
            deleted = (0, 0)
            if work.deletes:
                with ReadScope(self.store.path):
                    deleted = sql.records_sum_by_range(
                        conn, work.topic_id, work.partition, work.log_start_offset, work.target
                    )
            compacted = self._compaction_size(work) if work.compact else (0, 0)
            reasons = work.reasons + (("compact",) if compacted[0] else ())
            reports.append(
                PartitionReport(
                    work.topic,
                    work.partition,
                    deleted[0] + compacted[0],
                    deleted[1] + compacted[1],
                    max(work.log_start_offset, work.target),
                    reasons,
                )
            )
        return RetentionReport(tuple(reports), True, started, self.store.now(), 0, False, None)

    def _nothing_to_do(self, plan: list[_Work], room: Room, started: int) -> RetentionReport:
        """A sweep that deletes nothing: no lease, no reserve released, and on a full disk
        nothing written that would fail (the WAL is checkpointed only if that fits)."""
        store = self.store
        self._progress(self._total, self._total, "")  # every partition checked
        full = low_on_space(store.path)
        vacuumed = 0
        if self.vacuum and not full:  # pages freed by earlier sweeps can still go
            vacuumed = incremental_vacuum(store)
        checkpointed = False
        if store.path != ":memory:" and checkpoint_fits(store.connection, store.path):
            try:
                checkpointed = cap_wal(store, 0 if full or vacuumed else self.wal_cap)
            except StorageError:
                checkpointed = False
        reports = tuple(
            PartitionReport(w.topic, w.partition, 0, 0, w.log_start_offset, ()) for w in plan
        )
        report = RetentionReport(
            reports, False, started, store.now(), vacuumed, checkpointed, None, disk_full=full
        )
        if not full:
            self._record(report, room)
        return report

    def _sweep(self, plan: list[_Work], room: Room, started: int) -> RetentionReport:
        store = self.store
        reason = self._take_lease(room)
        if reason is not None:
            return RetentionReport((), False, started, store.now(), 0, False, reason)
        reports: list[PartitionReport] = []
        vacuumed = 0
        checkpointed = False
        finished = False
        try:
            for work in plan:
                self._progress(self._done, self._total, f"{work.topic}/{work.partition}")
                reports.append(self._partition(work, room))
                self._done += 1
            self._progress(self._done, self._total, "")
            if self.vacuum or room.low:
                self._progress(self._done, self._total, "vacuum")
                vacuumed = room.vacuum()
            # Freed pages leave the file only when the WAL is checkpointed.
            checkpointed = (
                room.settle() if room.low else cap_wal(store, 0 if vacuumed else self.wal_cap)
            )
            finished = True
        finally:
            try:
                self._release_lease(room)
            except StorageError:
                if finished:
                    raise
                # Already failing: the lease expires, or the next sweep sees this one is gone.
        report = RetentionReport(
            tuple(reports),
            False,
            started,
            store.now(),
            vacuumed,
            checkpointed,
            None,
            reserve_released=room.released,
            disk_full=room.full,
        )
        self._record(report, room)
        return report

    def _record(self, report: RetentionReport, room: Room) -> None:
        from pubsub.db import producers
        from pubsub.limits import DEFAULT_DEDUP_WINDOW_MS, PRODUCER_EXPIRATION_MS

        def insert(conn: sqlite3.Connection) -> None:
            # Producer state past its window goes too (producing with ids prunes its own
            # topic; this catches topics nobody produces to any more).
            producers.producer_state_expire(
                conn, report.finished_ms, DEFAULT_DEDUP_WINDOW_MS, PRODUCER_EXPIRATION_MS
            )
            sql.retention_runs_insert(
                conn,
                report.started_ms,
                report.finished_ms,
                report.deleted_records,
                report.deleted_bytes,
                len(report.partitions),
            )

        room.run(insert)

    def _partition(self, work: _Work, room: Room) -> PartitionReport:
        store = self.store
        deleted = (0, 0)
        if work.deletes:

            def progress(share: float) -> None:
                self._progress(self._done + min(1.0, share), self._total, "")

            deleted = delete_prefix(
                store,
                room,
                work.topic_id,
                work.partition,
                work.target,
                batcher=self._batcher,
                inside=self._renew,
                progress=progress,
            )
        reasons = list(work.reasons)
        compacted = (0, 0)
        if work.compact:
            with ReadScope(store.path):
                state = catalog.partition_get(store.connection, work.topic_id, work.partition)
            if state is not None:
                compacted = self._compact(work, room, state.next_offset)
            if compacted[0]:
                reasons.append("compact")
        with ReadScope(store.path):
            after = catalog.partition_get(store.connection, work.topic_id, work.partition)
        log_start = after.log_start_offset if after is not None else work.target
        return PartitionReport(
            work.topic,
            work.partition,
            deleted[0] + compacted[0],
            deleted[1] + compacted[1],
            log_start,
            tuple(reasons),
        )

    def _delete_target(
        self, topic: str, topic_id: int, state: catalog.PartitionState, config: dict[str, str]
    ) -> tuple[int, list[str]]:
        """The offset below which the delete policies remove everything, and which did."""
        conn = self.store.connection
        partition = state.partition
        start, end = state.log_start_offset, state.next_offset
        candidates: list[tuple[int, str]] = []
        retention_ms = int(config["retention.ms"])
        if retention_ms >= 0:
            from pubsub.db.log import time_index_find_by_timestamp

            keep = time_index_find_by_timestamp(
                conn, topic_id, partition, self.store.now() - retention_ms, start
            )
            candidates.append((end if keep is None else keep, "retention.ms"))
        max_records = int(config["retention.messages"])
        if max_records >= 0 and state.record_count > max_records:
            keep = sql.records_seek(conn, topic_id, partition, state.record_count - max_records)
            candidates.append((end if keep is None else keep, "retention.messages"))
        max_bytes = int(config["retention.bytes"])
        if max_bytes >= 0 and state.byte_count > max_bytes:
            candidates.append(
                (self._bytes_target(topic_id, partition, start, state.byte_count - max_bytes),
                 "retention.bytes")
            )  # fmt: skip
        if config["retention.consumed"] == "true":
            consumed = _consumed_below(self.store, conn, topic, topic_id, partition, start)
            if consumed is not None:
                candidates.append((min(consumed, end), "retention.consumed"))
        target = max([start, *(offset for offset, _ in candidates)])
        reasons = [reason for offset, reason in candidates if offset > start]
        if target > start and config.get("retention.hold.mirrors") == "true":
            from pubsub.db.mirrors import mirror_progress_min_by_partition

            hold = mirror_progress_min_by_partition(conn, topic_id, partition)
            if hold is not None and hold[0] < target:
                kept_from = max(start, hold[0])
                self._held.append(
                    f"{topic}[{partition}]: kept offsets {kept_from} to {target - 1} "
                    f"({target - kept_from} records) that mirror {hold[1]!r} has not "
                    "forwarded yet (retention.hold.mirrors)"
                )
                target = kept_from
                reasons = reasons if target > start else []
        return target, reasons

    def _bytes_target(self, topic_id: int, partition: int, start: int, excess: int) -> int:
        conn = self.store.connection
        freed = 0
        position = start
        while True:
            rows = sql.records_measure(conn, topic_id, partition, position, 10_000)
            if not rows:
                return position
            for offset, size in rows:
                freed += size
                if freed >= excess:
                    return offset + 1
            position = rows[-1][0] + 1

    def _compact(self, work: _Work, room: Room, head: int) -> tuple[int, int]:
        """Keep the latest record per key below ``head``; drop expired tombstones."""
        store = self.store
        topic_id, partition = work.topic_id, work.partition
        with ReadScope(store.path):
            state = catalog.partition_get(store.connection, topic_id, partition)
        if state is None:
            return 0, 0
        low = max(state.cleaned_offset, state.log_start_offset)
        cutoff = store.now() - int(work.config["delete.retention.ms"])
        total = [0, 0]
        after: bytes | None = None
        while True:
            began = time.monotonic()
            limit = max(10, self._batcher.rows // 10)
            step = partial(self._older_versions, topic_id, partition, low, head, after, limit)
            keys, records, size = room.run(step)
            room.settle()
            self._batcher.measured(max(records, len(keys)) * 10, time.monotonic() - began)
            total[0] += records
            total[1] += size
            time.sleep(YIELD_SECONDS)
            if len(keys) < limit:
                break
            after = keys[-1][0]
        while True:
            rows = self._batcher.rows
            found, records, size = room.run(
                partial(self._expired_tombstones, topic_id, partition, cutoff, head, rows)
            )
            room.settle()
            total[0] += records
            total[1] += size
            if found < rows or not records:
                break
        return total[0], total[1]

    def _older_versions(
        self,
        topic_id: int,
        partition: int,
        low: int,
        head: int,
        after: bytes | None,
        limit: int,
        conn: sqlite3.Connection,
    ) -> tuple[list[tuple[bytes, int]], int, int]:
        """One compaction transaction: older versions of up to ``limit`` keys written in
        ``[low, head)`` (after key ``after``); (keys, records, bytes)."""
        keys = sql.keys_list_by_range(conn, topic_id, partition, low, head, limit, after)
        records = size = 0
        for key, newest in keys:
            r, s = sql.records_delete_by_key(conn, topic_id, partition, key, newest)
            records += r
            size += s
        sql.partition_shrink(conn, topic_id, partition, records, size, None)
        if len(keys) < limit:
            sql.partition_clean(conn, topic_id, partition, head)
        self._renew(conn)
        return keys, records, size

    def _expired_tombstones(
        self,
        topic_id: int,
        partition: int,
        cutoff: int,
        head: int,
        rows: int,
        conn: sqlite3.Connection,
    ) -> tuple[int, int, int]:
        """One transaction of tombstones older than ``cutoff``; (found, records, bytes)."""
        stones = sql.tombstones_list(conn, topic_id, partition, cutoff, head, rows)
        records = size = 0
        for offset, key, stone_size in stones:
            # Only a tombstone that is still the key's latest record may go.
            if sql.records_max_by_key(conn, topic_id, partition, key) == offset:
                sql.record_delete(conn, topic_id, partition, offset)
                records += 1
                size += stone_size
        sql.partition_shrink(conn, topic_id, partition, records, size, None)
        start = sql.partition_settle(conn, topic_id, partition)
        sql.time_index_prune(conn, topic_id, partition, start)
        self._renew(conn)
        return len(stones), records, size


def _holder_alive(lease: sql.LeaseRow, now_lease: int, boot: str) -> bool:
    if lease.boot_id != boot or lease.lease_expires < now_lease:
        return False
    try:
        holder = json.loads(lease.holder)
    except ValueError:
        return False
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return False  # the sweep that held it died: no need to wait for the lease
        except PermissionError:
            return True
    return True


def _consumed_below(
    store: Store,
    conn: sqlite3.Connection,
    topic: str,
    topic_id: int,
    partition: int,
    log_start: int,
) -> int | None:
    """The lowest committed offset among the groups reading the topic (None: no group)."""
    readers: dict[str, int | None] = {}
    for name, offset in groups.offsets_list_by_partition(conn, topic_id, partition):
        readers[name] = offset
    now_lease, boot = store.lease_now(), store.boot_id
    for group in groups.group_list(conn):
        name, group_id = group.name, group.group_id
        if name in readers:
            continue
        live = set(membership.members_list_by_live_lease(conn, group_id, boot, now_lease))
        subscribed = any(
            topic in json.loads(m.topics)
            for m in membership.members_get(conn, group_id)
            if m.member_id in live
        )
        has_topic = groups.offsets_find_by_topic(conn, group_id, topic_id)
        if subscribed or has_topic:
            readers[name] = None  # reads the topic, nothing committed here yet: needs it all
    from pubsub.db.shares import share_partitions_min_by_partition

    # A share group reads a partition up to its start offset (below it all is decided).
    share_start = share_partitions_min_by_partition(conn, topic_id, partition)
    if share_start is not None:
        readers["\0share"] = share_start
    if not readers:
        return None
    if any(offset is None for offset in readers.values()):
        return log_start
    return min(offset for offset in readers.values() if offset is not None)


def truncate(
    store: Store,
    topic: str,
    partitions: Iterable[int] | None = None,
    *,
    before: int | None = None,
    before_time: int | None = None,
) -> list[PartitionReport]:
    """Delete the records of ``topic`` below an offset, or older than a time; all by default.

    See :meth:`pubsub.broker.Broker.truncate`. Nothing is deleted when an argument is wrong
    (every partition is checked first). Runs like a sweep's deletions: short transactions,
    and on a full disk the reserve and the order of :mod:`pubsub.space`.
    """
    if before is not None and before_time is not None:
        raise InvalidArgumentError("give an offset or a time to truncate before, not both")
    for name, value in (("offset", before), ("time", before_time)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgumentError(f"invalid {name} {value!r} to truncate before")
    if before is not None and before < 0:
        raise InvalidArgumentError(
            f"invalid offset {before} to truncate before", hint="offsets are 0 or more"
        )
    conn = store.connection
    targets: list[tuple[int, int, int]] = []  # (partition, log start, target)
    clears = True  # every partition loses every record
    with ReadScope(store.path):
        row = catalog.topic_get_by_name(conn, topic)
        if row is None:
            raise TopicNotFoundError(topic)
        chosen = list(range(row.partition_count)) if partitions is None else list(partitions)
        for partition in dict.fromkeys(chosen):
            if (
                isinstance(partition, bool)
                or not isinstance(partition, int)
                or not (0 <= partition < row.partition_count)
            ):
                raise InvalidArgumentError(
                    f"topic {topic!r} has no partition {partition}",
                    hint=f"partitions are 0 to {row.partition_count - 1}",
                )
            state = catalog.partition_get(conn, row.topic_id, partition)
            if state is None:
                raise TopicNotFoundError(topic)
            start, end = state.log_start_offset, state.next_offset
            if before_time is not None:
                from pubsub.db.log import time_index_find_by_timestamp

                keep = time_index_find_by_timestamp(
                    conn, row.topic_id, partition, before_time, start
                )
                target = end if keep is None else keep
            elif before is not None:
                if before > end:
                    raise OffsetOutOfRangeError(
                        f"offset {before} is beyond the end of {topic}[{partition}] "
                        f"(next offset {end})",
                        offset=before,
                        log_start_offset=start,
                        next_offset=end,
                        hint=f"give at most {end} there (all of it), choose other partitions, "
                        "or leave out the offset to delete everything",
                    )
                target = before
            else:
                target = end
            if target > start:
                clears = clears and target >= end and state.byte_count <= CLEAR_MAX_BYTES
            targets.append((partition, start, target))
    room = Room(store)
    reports: list[PartitionReport] = []
    try:
        if any(target > start for _, start, target in targets):
            room.start(deletes=True, clears=clears)
        batcher = _Batcher()
        for partition, start, target in targets:
            deleted = (0, 0)
            if target > start:
                deleted = delete_prefix(
                    store, room, row.topic_id, partition, target, batcher=batcher
                )
            with ReadScope(store.path):
                after = catalog.partition_get(conn, row.topic_id, partition)
            log_start = after.log_start_offset if after is not None else target
            reports.append(PartitionReport(topic, partition, *deleted, log_start, ("truncate",)))
        if room.low:
            room.vacuum()
            room.settle()
        elif any(r.deleted_records for r in reports):
            cap_wal(store, DEFAULT_WAL_CAP)
    finally:
        room.close()
    return reports
