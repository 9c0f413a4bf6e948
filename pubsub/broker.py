"""The Broker: one process's handle on a pubsub database file.

A Broker owns one SQLite connection; use it from one thread (open one Broker per thread). Any
number of Brokers, in any number of processes, may use the same file at once.

It is a façade: each method delegates to a service over the broker's
:class:`~pubsub.db.store.Store` (:mod:`pubsub.topics`, :mod:`pubsub.writer`,
:mod:`pubsub.reader`, :mod:`pubsub.offsets`, :mod:`pubsub.group_admin`,
:mod:`pubsub.retention`, :mod:`pubsub.maintenance`); see docs/architecture.md.
"""

import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, SyncMode
from pubsub.db.files import DEFAULT_FILE_MODE
from pubsub.db.store import Clock, Store, wall_clock_ms
from pubsub.limits import DEFAULT_MAX_POLL_BYTES
from pubsub.membership import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_SESSION_TIMEOUT
from pubsub.models import GroupInfo, OffsetChange, OffsetReset, PartitionReport, Strategy
from pubsub.records import (
    HeadersInput,
    Message,
    ProduceResult,
    Record,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
)
from pubsub.services import Services

if TYPE_CHECKING:
    from pubsub.backend import LogClient
    from pubsub.consumer import Consumer
    from pubsub.maintenance import Problem
    from pubsub.models import ShareGroupInfo
    from pubsub.retention import RetentionReport
    from pubsub.share_consumer import ShareConsumer
    from pubsub.shares import ShareGroups
    from pubsub.stats import Stats

__all__ = ["Broker", "DatabaseInfo", "now_ms"]

#: Milliseconds since the Unix epoch (the default clock).
now_ms = wall_clock_ms


class DatabaseInfo(NamedTuple):
    """Facts about the database file, for ``pubsub db info``."""

    path: str
    file_bytes: int
    wal_bytes: int
    schema_version: int
    sqlite_version: str
    synchronous: str
    journal_mode: str
    auto_vacuum: str
    page_size: int
    page_count: int
    freelist_count: int
    tables: int
    topics: int


class Broker:
    """A handle on a pubsub database: topics, produce, fetch, offsets and groups.

    ``path`` is the database file, created (mode ``file_mode``, default 0600) unless
    ``create`` is false. ``sync`` is ``"full"`` (the default: an acknowledged produce survives
    power loss) or ``"normal"`` (faster; survives a crash of the process, may lose the last
    commits on power loss). ``busy_timeout`` is how long a write waits for the lock before
    :class:`~pubsub.errors.BusyError`. ``clock`` returns the time in ms since the epoch (tests
    inject one).

    Raises :class:`~pubsub.errors.SchemaError` for a file that is not a pubsub database or was
    written by a newer version, :class:`~pubsub.errors.DatabaseNotFoundError` when the file is
    missing and ``create`` is false.
    """

    __slots__ = ("_closed", "services", "store")

    def __init__(
        self,
        path: str | os.PathLike[str] = "pubsub.db",
        *,
        sync: SyncMode = "full",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        file_mode: int = DEFAULT_FILE_MODE,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._closed = False
        #: The services this façade delegates to (a Consumer opened on the broker shares them).
        self.services = Services.open(
            path,
            sync=sync,
            busy_timeout=busy_timeout,
            create=create,
            file_mode=file_mode,
            clock=Clock(wall=clock) if clock is not None else None,
        )
        #: The storage handle: connection, transactions, clock.
        self.store: Store = self.services.store

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file."""
        return self.store.path

    @property
    def sync(self) -> SyncMode:
        """The durability mode: ``"full"`` or ``"normal"``."""
        return self.store.sync

    @property
    def busy_timeout(self) -> float:
        """Seconds a write waits for the lock."""
        return self.store.busy_timeout

    @property
    def applied_migrations(self) -> list[int]:
        """The schema migrations this open applied (empty when the file was current)."""
        return self.store.applied_migrations

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self.store.close()

    def __enter__(self) -> "Broker":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def now(self) -> int:
        """The broker's clock: milliseconds since the epoch."""
        return self.store.now()

    @property
    def low_on_space(self) -> bool:
        """True when the database's file system had less than 64 MiB free at the last look
        (on opening, then after every 4 MiB produced).

        Checkpoints then run every 256 KiB of WAL, and ``pubsub produce`` commits its input
        in transactions of at most 128 KiB: what a disk that fills up leaves in the WAL must
        fit in the space reserve, or retention cannot win the disk back (see
        :mod:`pubsub.space`). A :meth:`produce_batch` is one transaction whatever its size.
        """
        return self.services.writer.low_on_space

    # -- topics, produce, read, offsets, groups, the file ------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, object] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> TopicInfo:
        """Create a topic with ``partitions`` partitions and Kafka-style ``config``.

        The database-wide defaults (:meth:`set_defaults`) are copied into the new topic's
        configuration unless ``config`` sets the same keys. Raises
        :class:`~pubsub.errors.TopicExistsError` if it exists, unless ``if_not_exists`` (then
        the existing topic is returned unchanged).
        """
        return self.services.topics.create(name, partitions, config, if_not_exists=if_not_exists)

    def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name, with partition counts and sizes."""
        return self.services.topics.list_all()

    def describe_topic(self, name: str) -> TopicInfo:
        """A topic with its configuration and, per partition, offsets, records and bytes."""
        return self.services.topics.describe(name)

    def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, object] | None = None,
        delete_config: Iterable[str] = (),
    ) -> TopicInfo:
        """Add partitions (never remove: keys would move) and set or reset configuration."""
        return self.services.topics.alter(
            name, partitions=partitions, config=config, delete_config=delete_config
        )

    def delete_topic(self, name: str) -> None:
        """Delete a topic, its records and every group offset on it.

        On a full disk this uses the space reserve as retention does (see :mod:`pubsub.space`):
        dropping a table writes almost nothing once freed pages are not zeroed, and the space
        goes back to the file system. Raises :class:`~pubsub.errors.StorageFullError` only
        when even that finds no room.
        """
        self.services.topics.delete(name)

    def truncate(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        *,
        before: int | None = None,
        before_time: int | None = None,
    ) -> list[PartitionReport]:
        """Delete the oldest records of ``topic``: all of them, those below offset ``before``,
        or those before the first record at or after ``before_time`` (ms since the epoch).

        Kafka's DeleteRecords: the log start offset moves forward and offsets keep counting
        (``next_offset`` does not change). ``partitions`` limits it to those partitions
        (default: all). A ``before`` beyond a partition's next offset raises
        :class:`~pubsub.errors.OffsetOutOfRangeError` and deletes nothing; ``before`` at or
        below the log start deletes nothing there. ``before_time`` is found through the time
        index in O(log n); with no record that new, everything goes. Group offsets are left
        as they are: a group below the new log start resumes there, with a warning, as after
        retention. Runs in short transactions, and on a full disk uses the space reserve (see
        :mod:`pubsub.space`). Returns, per partition, the records and bytes deleted and the new
        log start offset (``reasons`` is ``("truncate",)``).
        """
        return self.services.topics.truncate(
            topic, partitions, before=before, before_time=before_time
        )

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of a topic."""
        return self.services.topics.topic_partitions(topic)

    def refresh(self, topic: str) -> None:
        """Forget cached metadata of ``topic`` (partition count, limits)."""
        self.services.topics.forget(topic)

    def defaults(self) -> dict[str, str]:
        """The database-wide configuration copied into every new topic."""
        return self.services.topics.defaults()

    def set_defaults(
        self, config: Mapping[str, object] | None = None, *, unset: Iterable[str] = ()
    ) -> dict[str, str]:
        """Set (and unset) defaults for new topics; existing topics keep their configuration."""
        return self.services.topics.set_defaults(config, unset=unset)

    def produce(
        self,
        topic: str,
        value: bytes | str | None,
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
        id: str | None = None,
    ) -> RecordMetadata:
        """Append one record in its own transaction; return where it was written.

        The record is durable when this returns (under ``sync="full"``). With ``id`` (text,
        1 to 1024 bytes), the record is stored once however often it is produced within the
        topic's ``dedup.window.ms`` (2 minutes unless configured): a record with an id
        already stored in the window is not written, and the metadata of the stored one
        comes back with ``duplicate=True``, so a caller that does not know whether its
        produce went through can simply produce again. Past the window the id is forgotten
        and the same id stores a new record. Raises
        :class:`~pubsub.errors.InvalidRecordError` for a record the topic cannot take
        (nothing is written), :class:`~pubsub.errors.TopicNotFoundError`,
        :class:`~pubsub.errors.BusyError` after the busy timeout.
        """
        return self.services.writer.produce(
            topic,
            value,
            key=key,
            headers=headers,
            partition=partition,
            timestamp=timestamp,
            id=id,
        )

    def produce_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
    ) -> ProduceResult:
        """Append many records in one transaction: all are written or none.

        Items are :class:`Message` objects or plain values; ``key``, ``headers`` and
        ``partition`` apply to the plain values. Keyless records without a partition go
        together to the next partition in round-robin order. Returns the metadata of each
        record, in input order. On an invalid record,
        :class:`~pubsub.errors.InvalidRecordError` carries its ``index``.
        """
        return self.services.writer.produce_batch(
            topic, messages, key=key, headers=headers, partition=partition
        )

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 500,
        max_bytes: int | None = None,
    ) -> list[Record]:
        """Records of one partition from ``offset`` on, oldest first.

        At most ``max_records``; with ``max_bytes``, stops before the record that would take
        the keys and values past it (but always returns at least one record, so a large
        record cannot block a reader). Reading at ``next_offset`` returns ``[]``. Raises
        :class:`~pubsub.errors.OffsetOutOfRangeError` outside ``[log_start, next_offset]``.
        """
        return self.services.reader.fetch(
            topic, partition, offset, max_records=max_records, max_bytes=max_bytes
        )

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (log start offset, next offset)."""
        return self.services.reader.watermarks(topic)

    def settled_watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """:meth:`watermarks` read while holding the write lock (a transaction that writes
        nothing, so nothing is synced to disk).

        No append is in progress then, and appends stamp their records under the same lock:
        a record appended after this call has a timestamp from after it (unless its producer
        set one). ``consume -f --until @TIME`` uses this to end a partition that stays quiet.
        """
        return self.services.reader.settled_watermarks(topic)

    def earliest_offset(self, topic: str, partition: int) -> int:
        """The first offset still stored (Kafka's log start offset)."""
        return self.services.reader.earliest_offset(topic, partition)

    def latest_offset(self, topic: str, partition: int) -> int:
        """The offset the next record will get (Kafka's log end offset / high watermark)."""
        return self.services.reader.latest_offset(topic, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The earliest offset whose timestamp is >= ``timestamp`` (ms), or None if none is.

        O(log n) through the time index, whatever the order of the timestamps.
        """
        return self.services.reader.offset_for_time(topic, partition, timestamp)

    def commit_offsets(
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
        self.services.offsets.commit(group, offsets, metadata=metadata)

    def committed_offsets(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """A group's committed offsets (all topics, or one)."""
        return self.services.offsets.committed(group, topic)

    def list_groups(self) -> list[GroupInfo]:
        """Every consumer group: state, members, offsets and lag."""
        from pubsub import group_admin

        return group_admin.list_groups(self.store)

    def describe_group(self, group: str) -> GroupInfo:
        """A group's state, members, and per partition its committed offset, lag and owner."""
        from pubsub import group_admin

        return group_admin.describe_group(self.store, group)

    def plan_offset_reset(
        self,
        group: str,
        strategy: Strategy,
        *,
        topics: Mapping[str, Sequence[int] | None] | None = None,
        value: int | None = None,
    ) -> list[OffsetChange]:
        """A dry run of a reset (see :func:`pubsub.group_admin.plan_reset`)."""
        from pubsub import group_admin

        return group_admin.plan_reset(self.store, group, strategy, topics=topics, value=value)

    def reset_offsets(
        self, group: str, plan: Sequence[OffsetChange], *, force: bool = False
    ) -> None:
        """Apply a reset plan in one transaction; refused with live members unless ``force``."""
        from pubsub import group_admin

        group_admin.execute_reset(self.store, group, plan, force=force)

    def delete_group(self, group: str) -> None:
        """Delete a group and its offsets (refused while it has live members)."""
        from pubsub import group_admin

        group_admin.delete_group(self.store, group)

    def delete_group_offsets(self, group: str, topic: str) -> int:
        """Delete a group's offsets on one topic; return how many partitions had one."""
        from pubsub import group_admin

        return group_admin.delete_group_offsets(self.store, group, topic)

    def stats(self, topics: Iterable[str] | None = None) -> "Stats":
        """Topics, partitions and groups with sizes, ends and lag, read from one snapshot."""
        from pubsub.stats import collect

        return collect(self.store, topics)

    def run_retention(
        self,
        topics: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        wal_cap: int = 64 * 1024 * 1024,
        progress: Callable[[float, float, str], None] | None = None,
    ) -> "RetentionReport":
        """Apply every topic's retention and compaction once (see :mod:`pubsub.retention`).

        With ``dry_run`` nothing is deleted and the report says what would be. With ``vacuum``
        freed pages are returned to the file system afterwards. The WAL is checkpointed and
        truncated if it is larger than ``wal_cap`` bytes. ``progress`` is called with
        (partitions done, partitions in all, what now) as the sweep moves on.
        """
        from pubsub.retention import Sweeper

        sweeper = Sweeper(
            self.store, dry_run=dry_run, vacuum=vacuum, wal_cap=wal_cap, progress=progress
        )
        return sweeper.run(topics)

    def check(self, *, quick: bool = False) -> "list[Problem]":
        """Integrity check plus pubsub's invariants; an empty list means all is well."""
        from pubsub import maintenance

        return maintenance.check(self.store, quick=quick)

    def vacuum(
        self, *, full: bool = False, progress: Callable[[float, float], None] | None = None
    ) -> int:
        """Return free pages to the file system (``full``: rebuild the file); pages freed."""
        from pubsub import maintenance

        return maintenance.vacuum(self.store, full=full, progress=progress)

    def backup(
        self,
        path: str | os.PathLike[str],
        *,
        mode: int = DEFAULT_FILE_MODE,
        progress: Callable[[float, float], None] | None = None,
    ) -> int:
        """Write a consistent copy to a new file ``path`` (mode ``mode``) while writers go on.

        Returns its size. ``progress`` is called with (bytes written, bytes expected) while it
        runs.
        """
        from pubsub import maintenance

        return maintenance.backup(self.store, os.fspath(path), mode=mode, progress=progress)

    def consumer(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[TopicPartition | tuple[str, int]] | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        on_warning: Callable[[str], None] | None = None,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        lease_clock: Callable[[], int] | None = None,
    ) -> "Consumer":
        """A :class:`~pubsub.consumer.Consumer` sharing this broker's connection.

        The parameters are the Consumer's (every one of them); the consumer must be used from
        this thread.
        """
        from pubsub.consumer import Consumer

        return Consumer(
            self,
            topics,
            group=group,
            partitions=partitions,
            auto_offset_reset=auto_offset_reset,
            auto_commit=auto_commit,
            auto_commit_interval=auto_commit_interval,
            max_poll_records=max_poll_records,
            max_poll_bytes=max_poll_bytes,
            iter_timeout=iter_timeout,
            on_warning=on_warning,
            session_timeout=session_timeout,
            max_poll_interval=max_poll_interval,
            on_assign=on_assign,
            on_revoke=on_revoke,
            lease_clock=lease_clock,
        )

    def _share_groups(self) -> "ShareGroups":
        from pubsub.shares import ShareGroups

        svc = self.services
        return ShareGroups(svc.store, svc.topics, svc.writer)

    def list_share_groups(self) -> "list[ShareGroupInfo]":
        """Every share group, described (see :meth:`describe_share_group`), by name."""
        shares = self._share_groups()
        return [shares.describe(name) for name in shares.names()]

    def describe_share_group(self, name: str) -> "ShareGroupInfo":
        """A share group: per partition its start offset, records available, records
        acquired (by whom, until when), deliveries and archived records. Raises
        :class:`~pubsub.errors.GroupNotFoundError`."""
        return self._share_groups().describe(name)

    def reset_share_group(
        self, name: str, topic: str | None, where: "Callable[[int, int, int], int]"
    ) -> list[tuple[str, int, int, int]]:
        """Move a share group's start offsets (``where(partition, log_start, next_offset)``),
        emptying their windows; returns (topic, partition, old, new). Run it with no member
        running: the records they hold are released."""
        return self._share_groups().reset(name, topic, where)

    def delete_share_group(self, name: str) -> None:
        """Delete a share group. Raises :class:`~pubsub.errors.GroupNotFoundError`."""
        self._share_groups().delete(name)

    def share_consumer(
        self,
        topics: str | Iterable[str],
        *,
        group: str,
        lock_timeout: float = 30.0,
        max_deliveries: int = 5,
        dead_letter: str | None = None,
        max_poll_records: int = 500,
        on_warning: Callable[[str], None] | None = None,
        reset: OffsetReset = "earliest",
        iter_timeout: float | None = None,
    ) -> "ShareConsumer":
        """A :class:`~pubsub.share_consumer.ShareConsumer` (a share-group member) sharing
        this broker's connection; the parameters are the ShareConsumer's. Use it from this
        thread."""
        from pubsub.share_consumer import ShareConsumer

        return ShareConsumer(
            self,
            topics,
            group=group,
            lock_timeout=lock_timeout,
            max_deliveries=max_deliveries,
            dead_letter=dead_letter,
            max_poll_records=max_poll_records,
            on_warning=on_warning,
            reset=reset,
            iter_timeout=iter_timeout,
        )

    def info(self) -> DatabaseInfo:
        """Path, sizes, schema version, SQLite version and durability settings."""
        from pubsub.db.info import database_counts

        stats, topics = database_counts(self.store)
        return DatabaseInfo(
            path=os.path.abspath(self.path),
            file_bytes=stats.file_bytes,
            wal_bytes=stats.wal_bytes,
            schema_version=stats.user_version,
            sqlite_version=sqlite3.sqlite_version,
            synchronous=stats.synchronous,
            journal_mode=stats.journal_mode,
            auto_vacuum=stats.auto_vacuum,
            page_size=stats.page_size,
            page_count=stats.page_count,
            freelist_count=stats.freelist_count,
            tables=stats.tables,
            topics=topics,
        )


def _is_a_log_client(broker: Broker) -> "LogClient":
    """Never called: mypy proves here that a Broker is a LogClient (and its Consumer a
    LogConsumer, through ``consumer()``'s return type)."""
    return broker
