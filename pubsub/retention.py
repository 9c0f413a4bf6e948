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
transactions sized to about 20 ms each, so producers and consumers keep going during a sweep of
millions of records; a sweep killed midway leaves a consistent database and the next one
finishes the job. A lease in the database keeps two overlapping sweeps (cron) from running at
once.

On a full disk even a deletion needs room: its pages go to the WAL first, and only a vacuum
and a checkpoint give the space back, so a sweep that starts with less free space than the
reserve's size does both. A sweep that fails with :class:`StorageFullError` therefore
deletes the database's reserve file (``<db>-reserve``, see :mod:`pubsub.db.files`) and runs
again, this time with ``secure_delete=FAST`` (freed pages are not zeroed through the WAL),
returning freed pages to the file system and truncating the WAL; every sweep puts the reserve
back afterwards when the disk has room for it.
"""

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from pubsub.config import effective_config
from pubsub.db import catalog, membership
from pubsub.db import retention as sql
from pubsub.db.files import low_on_space, release_reserve, restore_reserve
from pubsub.db.transaction import ReadScope, WriteTransaction
from pubsub.errors import StorageFullError, TopicNotFoundError
from pubsub.membership import boot_id, lease_clock_ms

if TYPE_CHECKING:
    from pubsub.broker import Broker

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


class PartitionReport(NamedTuple):
    """What a sweep did (or, in a dry run, would do) to one partition."""

    topic: str
    partition: int
    deleted_records: int
    deleted_bytes: int
    log_start_offset: int
    reasons: tuple[str, ...]


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

    @property
    def deleted_records(self) -> int:
        """Records deleted in all partitions."""
        return sum(p.deleted_records for p in self.partitions)

    @property
    def deleted_bytes(self) -> int:
        """Bytes of keys, values and headers deleted in all partitions."""
        return sum(p.deleted_bytes for p in self.partitions)


class _Batcher:
    """Sizes write transactions so that each takes about TARGET_BATCH_SECONDS."""

    def __init__(self, rows: int = 2000) -> None:
        self.rows = rows

    def measured(self, rows: int, seconds: float) -> None:
        if rows <= 0 or seconds <= 0:
            return
        ideal = rows * TARGET_BATCH_SECONDS / seconds
        self.rows = int(min(200_000, max(100, (self.rows + ideal) / 2)))


class Sweeper:
    """Applies retention and compaction to every partition of the chosen topics."""

    def __init__(
        self,
        broker: "Broker",
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        wal_cap: int = DEFAULT_WAL_CAP,
        lease_clock: Callable[[], int] = lease_clock_ms,
        progress: Callable[[float, float, str], None] | None = None,
    ) -> None:
        self.broker = broker
        #: Called with (partitions done, partitions in all, what now) as the sweep moves on;
        #: within a partition the first number grows with the share of the prefix deleted.
        self._progress = progress or (lambda done, total, what: None)
        self._done = 0.0
        self._total = 0.0
        self.dry_run = dry_run
        self.vacuum = vacuum
        self.wal_cap = wal_cap
        self._lease_clock = lease_clock
        self._holder = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "run": secrets.token_hex(4)}
        )
        self._batcher = _Batcher()

    # -- transactions and the lease ----------------------------------------------------------

    def _write(self) -> WriteTransaction:
        broker = self.broker
        return broker._write()

    def _take_lease(self) -> str | None:
        """Take the sweep lease; return why not if another live sweep holds it."""
        with self._write() as conn:
            current = sql.lease_get(conn, LEASE_NAME)
            if (
                current is not None
                and current.holder != self._holder
                and _holder_alive(current, self._lease_clock())
            ):
                holder = json.loads(current.holder)
                return (
                    f"another retention run is in progress (pid {holder.get('pid')} on "
                    f"{holder.get('host')})"
                )
            sql.lease_put(conn, LEASE_NAME, self._holder, boot_id(), self._lease_clock() + LEASE_MS)
        return None

    def _renew(self, conn: sqlite3.Connection) -> None:
        sql.lease_put(conn, LEASE_NAME, self._holder, boot_id(), self._lease_clock() + LEASE_MS)

    def _release_lease(self) -> None:
        with self._write() as conn:
            sql.lease_delete(conn, LEASE_NAME, self._holder)

    # -- the sweep ---------------------------------------------------------------------------

    def run(self, topics: Iterable[str] | None = None) -> RetentionReport:
        """Apply the policies once; with ``dry_run`` only report what would go.

        With less free space than the reserve's size, the sweep also vacuums and truncates the
        WAL, so that what it deletes leaves the file. If it fails because the disk is full, it
        releases the reserve file and sweeps again (the reserve is put back at the end when
        there is room for it).
        """
        path = self.broker.path
        if self.dry_run or path == ":memory:":
            return self._sweep(topics)
        saved = self.vacuum, self.wal_cap
        if low_on_space(path):
            # Deleted pages give space back only after a vacuum and a checkpoint.
            self.vacuum, self.wal_cap = True, 0
        try:
            report = self._sweep(topics)
        except StorageFullError:
            if not release_reserve(path):
                raise
            # This SQLite may zero every freed page (secure_delete), which would put the whole
            # deleted prefix into the WAL again; FAST skips that where it costs I/O.
            conn = self.broker.connection
            secure = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
            self.vacuum, self.wal_cap = True, 0
            self._done = 0.0
            conn.execute("PRAGMA secure_delete=FAST")
            try:
                report = self._sweep(topics)._replace(reserve_released=True)
            except StorageFullError:
                restore_reserve(path)  # it did not help (a file-size limit): keep it
                raise
            finally:
                # An I/O error in the retry closes this connection (the broker opens a new
                # one, with the default setting): then there is nothing to restore.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA secure_delete={secure}")
        finally:
            self.vacuum, self.wal_cap = saved
        restore_reserve(path)
        return report

    def _sweep(self, topics: Iterable[str] | None) -> RetentionReport:
        broker = self.broker
        started = broker.now()
        with ReadScope(broker.path):
            if topics is None:
                rows = catalog.topic_list(broker.connection)
            else:
                rows = []
                for name in dict.fromkeys(topics):
                    row = catalog.topic_get_by_name(broker.connection, name)
                    if row is None:
                        raise TopicNotFoundError(name)
                    rows.append(row)
        if not self.dry_run:
            reason = self._take_lease()
            if reason is not None:
                return RetentionReport((), False, started, broker.now(), 0, False, reason)
        reports: list[PartitionReport] = []
        self._total = float(sum(row.partition_count for row in rows))
        try:
            for row in rows:
                with ReadScope(broker.path):
                    config = effective_config(catalog.configs_get(broker.connection, row.topic_id))
                for partition in range(row.partition_count):
                    self._progress(self._done, self._total, f"{row.name}/{partition}")
                    done = self._partition(row.name, row.topic_id, partition, config)
                    if done is not None:
                        reports.append(done)
                    self._done += 1
            self._progress(self._done, self._total, "")
            vacuumed = 0
            checkpointed = False
            if not self.dry_run:
                if self.vacuum:
                    self._progress(self._done, self._total, "vacuum")
                    vacuumed = incremental_vacuum(broker)
                # Freed pages leave the file only when the WAL is checkpointed.
                checkpointed = cap_wal(broker, 0 if vacuumed else self.wal_cap)
        finally:
            if not self.dry_run:
                self._release_lease()
        finished = broker.now()
        report = RetentionReport(
            tuple(reports), self.dry_run, started, finished, vacuumed, checkpointed, None
        )
        if not self.dry_run:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO retention_runs (started_ms, finished_ms, deleted_records, "
                    "deleted_bytes, partitions) VALUES (?, ?, ?, ?, ?)",
                    (started, finished, report.deleted_records, report.deleted_bytes, len(reports)),
                )
        return report

    def _partition(
        self, topic: str, topic_id: int, partition: int, config: dict[str, str]
    ) -> PartitionReport | None:
        broker = self.broker
        conn = broker.connection
        policies = set(config["cleanup.policy"].split(","))
        with ReadScope(broker.path):
            state = sql.partition_state(conn, topic_id, partition)
            if state is None:
                return None
            target, reasons = (
                self._delete_target(topic, topic_id, state, config)
                if "delete" in policies
                else (state.log_start_offset, [])
            )
        deleted = (0, 0)
        if target > state.log_start_offset:
            deleted = (
                sql.range_stats(conn, topic_id, partition, state.log_start_offset, target)
                if self.dry_run
                else self._delete_prefix(topic_id, partition, target)
            )
        compacted = (0, 0)
        if "compact" in policies:
            compacted = self._compact(topic_id, partition, config, state.next_offset)
            if compacted[0]:
                reasons.append("compact")
        records, size = deleted[0] + compacted[0], deleted[1] + compacted[1]
        with ReadScope(broker.path):
            after = sql.partition_state(conn, topic_id, partition)
        log_start = after.log_start_offset if after is not None else target
        if self.dry_run:
            log_start = max(state.log_start_offset, target)
        return PartitionReport(topic, partition, records, size, log_start, tuple(reasons))

    def _delete_target(
        self, topic: str, topic_id: int, state: sql.PartitionState, config: dict[str, str]
    ) -> tuple[int, list[str]]:
        """The offset below which the delete policies remove everything, and which did."""
        conn = self.broker.connection
        partition = state.partition
        start, end = state.log_start_offset, state.next_offset
        candidates: list[tuple[int, str]] = []
        retention_ms = int(config["retention.ms"])
        if retention_ms >= 0:
            from pubsub.db.log import offset_for_timestamp

            keep = offset_for_timestamp(
                conn, topic_id, partition, self.broker.now() - retention_ms, start
            )
            candidates.append((end if keep is None else keep, "retention.ms"))
        max_records = int(config["retention.messages"])
        if max_records >= 0 and state.record_count > max_records:
            keep = sql.nth_offset(conn, topic_id, partition, state.record_count - max_records)
            candidates.append((end if keep is None else keep, "retention.messages"))
        max_bytes = int(config["retention.bytes"])
        if max_bytes >= 0 and state.byte_count > max_bytes:
            candidates.append(
                (self._bytes_target(topic_id, partition, start, state.byte_count - max_bytes),
                 "retention.bytes")
            )  # fmt: skip
        if config["retention.consumed"] == "true":
            consumed = _consumed_below(conn, topic, topic_id, partition, start)
            if consumed is not None:
                candidates.append((min(consumed, end), "retention.consumed"))
        target = max([start, *(offset for offset, _ in candidates)])
        return target, [reason for offset, reason in candidates if offset > start]

    def _bytes_target(self, topic_id: int, partition: int, start: int, excess: int) -> int:
        conn = self.broker.connection
        freed = 0
        position = start
        while True:
            rows = sql.sizes_from(conn, topic_id, partition, position, 10_000)
            if not rows:
                return position
            for offset, size in rows:
                freed += size
                if freed >= excess:
                    return offset + 1
            position = rows[-1][0] + 1

    def _delete_prefix(self, topic_id: int, partition: int, target: int) -> tuple[int, int]:
        """Delete everything below ``target`` in short transactions."""
        total_records = total_bytes = 0
        start: int | None = None
        while True:
            began = time.monotonic()
            with self._write() as conn:
                state = sql.partition_state(conn, topic_id, partition)
                if state is None or state.log_start_offset >= target:
                    break
                low = state.log_start_offset
                if start is None:
                    start = low
                high = sql.offset_after(conn, topic_id, partition, low, self._batcher.rows)
                high = target if high is None else min(high, target)
                records, size = sql.delete_range(conn, topic_id, partition, low, high)
                sql.account_deleted(conn, topic_id, partition, records, size, high)
                sql.prune_time_index(conn, topic_id, partition, high)
                self._renew(conn)
            self._batcher.measured(records, time.monotonic() - began)
            total_records += records
            total_bytes += size
            share = (high - start) / max(1, target - start)
            self._progress(self._done + min(1.0, share), self._total, "")
            time.sleep(YIELD_SECONDS)
        return total_records, total_bytes

    def _compact(
        self, topic_id: int, partition: int, config: dict[str, str], head: int
    ) -> tuple[int, int]:
        """Keep the latest record per key below ``head``; drop expired tombstones."""
        broker = self.broker
        conn = broker.connection
        with ReadScope(broker.path):
            state = sql.partition_state(conn, topic_id, partition)
        if state is None:
            return 0, 0
        low = max(state.cleaned_offset, state.log_start_offset)
        tombstone_cutoff = broker.now() - int(config["delete.retention.ms"])
        if self.dry_run:
            return _compaction_estimate(conn, topic_id, partition, low, head, tombstone_cutoff)
        total = [0, 0]
        after: bytes | None = None
        while True:
            began = time.monotonic()
            with self._write() as conn:
                limit = max(10, self._batcher.rows // 10)
                keys = (
                    sql.dirty_keys(conn, topic_id, partition, low, head, limit)
                    if after is None
                    else sql.dirty_keys_after(conn, topic_id, partition, low, head, after, limit)
                )
                records = size = 0
                for key, newest in keys:
                    r, s = sql.delete_older_versions(conn, topic_id, partition, key, newest)
                    records += r
                    size += s
                sql.account_deleted(conn, topic_id, partition, records, size, None)
                if len(keys) < limit:
                    sql.set_cleaned_offset(conn, topic_id, partition, head)
                self._renew(conn)
            self._batcher.measured(max(records, len(keys)) * 10, time.monotonic() - began)
            total[0] += records
            total[1] += size
            time.sleep(YIELD_SECONDS)
            if len(keys) < limit:
                break
            after = keys[-1][0]
        while True:
            with self._write() as conn:
                stones = sql.expired_tombstones(
                    conn, topic_id, partition, tombstone_cutoff, head, self._batcher.rows
                )
                records = size = 0
                for offset, key, stone_size in stones:
                    # Only a tombstone that is still the key's latest record may go.
                    if sql.latest_offset_of_key(conn, topic_id, partition, key) == offset:
                        sql.delete_offset(conn, topic_id, partition, offset)
                        records += 1
                        size += stone_size
                sql.account_deleted(conn, topic_id, partition, records, size, None)
                start = sql.settle_log_start(conn, topic_id, partition)
                sql.prune_time_index(conn, topic_id, partition, start)
            total[0] += records
            total[1] += size
            if len(stones) < self._batcher.rows or not records:
                break
        return total[0], total[1]


def _holder_alive(lease: sql.LeaseRow, now_lease: int) -> bool:
    if lease.boot_id != boot_id() or lease.lease_expires < now_lease:
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
    conn: sqlite3.Connection, topic: str, topic_id: int, partition: int, log_start: int
) -> int | None:
    """The lowest committed offset among the groups reading the topic (None: no group)."""
    readers: dict[str, int | None] = {}
    for row in conn.execute(
        "SELECT g.name, o.committed_offset FROM group_offsets AS o JOIN consumer_groups AS g "
        "ON g.group_id = o.group_id WHERE o.topic_id = ? AND o.partition = ?",
        (topic_id, partition),
    ):
        readers[row[0]] = int(row[1])
    now_lease, boot = lease_clock_ms(), boot_id()
    for name, group_id in conn.execute("SELECT name, group_id FROM consumer_groups"):
        if name in readers:
            continue
        live = set(membership.live_member_ids(conn, group_id, boot, now_lease))
        subscribed = any(
            topic in json.loads(m.topics)
            for m in membership.members_get(conn, group_id)
            if m.member_id in live
        )
        has_topic = bool(
            conn.execute(
                "SELECT 1 FROM group_offsets WHERE group_id = ? AND topic_id = ? LIMIT 1",
                (group_id, topic_id),
            ).fetchone()
        )
        if subscribed or has_topic:
            readers[name] = None  # reads the topic, nothing committed here yet: needs it all
    if not readers:
        return None
    if any(offset is None for offset in readers.values()):
        return log_start
    return min(offset for offset in readers.values() if offset is not None)


def _compaction_estimate(
    conn: sqlite3.Connection, topic_id: int, partition: int, low: int, head: int, cutoff: int
) -> tuple[int, int]:
    from pubsub.db.log import log_table

    table = log_table(topic_id, partition)
    older = conn.execute(
        f"SELECT count(*), ifnull(sum({sql.RECORD_SIZE}), 0) FROM {table} AS l "
        'WHERE l.key IS NOT NULL AND l."offset" < (SELECT max(m."offset") FROM '
        f'{table} AS m WHERE m.key = l.key AND m."offset" < ?) AND l.key IN '
        f'(SELECT key FROM {table} WHERE "offset" >= ? AND "offset" < ?)',
        (head, low, head),
    ).fetchone()
    stones = conn.execute(
        f"SELECT count(*), ifnull(sum({sql.RECORD_SIZE}), 0) FROM {table} AS l "
        'WHERE l.value IS NULL AND l.key IS NOT NULL AND l.timestamp < ? AND l."offset" < ? '
        f'AND l."offset" = (SELECT max(m."offset") FROM {table} AS m WHERE m.key = l.key)',
        (cutoff, head),
    ).fetchone()
    return int(older[0]) + int(stones[0]), int(older[1]) + int(stones[1])


def incremental_vacuum(
    broker: "Broker",
    pages_per_step: int = 2048,
    progress: Callable[[float, float], None] | None = None,
) -> int:
    """Return free pages to the file system in short steps; the number of pages freed.

    ``progress`` is called with (pages freed, free pages at the start) after each step.
    """
    from pubsub.db.transaction import run_script_immediate

    conn = broker.connection
    freed = 0
    total = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    while True:
        before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if before == 0:
            return freed
        run_script_immediate(
            conn, f"PRAGMA incremental_vacuum({int(pages_per_step)});", broker.busy_timeout
        )
        after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        freed += before - after
        if progress is not None:
            progress(min(freed, total), max(total, freed))
        if after >= before:
            return freed


def cap_wal(broker: "Broker", cap: int) -> bool:
    """Checkpoint and truncate the WAL if it grew past ``cap`` bytes; True if it did."""
    try:
        size = os.stat(broker.path + "-wal").st_size
    except FileNotFoundError:
        return False
    if size <= cap:
        return False
    from pubsub.db.transaction import checkpoint_truncate

    return checkpoint_truncate(broker.connection, broker.path)
