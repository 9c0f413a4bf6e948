"""The Broker: one process's handle on a pubsub database file.

A Broker owns one SQLite connection; use it from one thread (open one Broker per thread). Any
number of Brokers, in any number of processes, may use the same file at once.
"""

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from pubsub.db import catalog, log, schema
from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, Reconnecting, SyncMode
from pubsub.db.files import DEFAULT_FILE_MODE, LOW_SPACE_BYTES, low_on_space
from pubsub.db.transaction import ReadScope, WriteTransaction
from pubsub.errors import (
    FencedError,
    InvalidArgumentError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    PubsubError,
    StorageFullError,
    TopicDeletedError,
    TopicExistsError,
    TopicNotFoundError,
)
from pubsub.limits import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_POLL_BYTES
from pubsub.partitioner import RoundRobin, partition_for_key
from pubsub.records import (
    HeadersInput,
    Message,
    PartitionInfo,
    ProduceResult,
    Record,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
    encode_headers,
)

if TYPE_CHECKING:
    from pubsub.consumer import Consumer, OffsetReset
    from pubsub.maintenance import Problem
    from pubsub.models import GroupInfo, OffsetChange, PartitionReport, Strategy
    from pubsub.retention import RetentionReport

__all__ = ["Broker", "DatabaseInfo"]

_new_record = tuple.__new__
_T = TypeVar("_T")
#: A producer looks at the free space again after writing this much.
_TUNE_EVERY_BYTES = 4 * 1024 * 1024
#: Part of the space reserve a small administrative write may use on a full disk.
_BORROW_BYTES = 256 * 1024


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class _TopicMeta(NamedTuple):
    topic_id: int
    name: str
    partitions: int
    config_version: int
    max_message_bytes: int
    compacted: bool


class _StaleMetadata(Exception):
    """Cached topic metadata no longer matches the catalog; refresh and retry."""


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


def _as_bytes(value: object, what: str, index: int) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRecordError(f"{what} is not valid Unicode text", index=index) from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidRecordError(
        f"{what} must be bytes, str or None, not {type(value).__name__}", index=index
    )


def _headers_size(raw: str | None) -> int:
    return len(raw.encode("utf-8")) if raw is not None else 0


class _Batch:
    """A produce call normalised: per-record columns, or constants shared by every record."""

    __slots__ = (
        "header_const",
        "headers",
        "key_const",
        "keys",
        "partition_const",
        "partitions",
        "sizes",
        "timestamps",
        "values",
    )

    def __init__(self) -> None:
        self.values: list[bytes | None] = []
        self.keys: list[bytes | None] | None = None
        self.key_const: bytes | None = None
        self.headers: list[str | None] | None = None
        self.header_const: str | None = None
        self.partitions: list[int | None] | None = None
        self.partition_const: int | None = None
        self.timestamps: list[int] | None = None
        self.sizes: list[int] | None = None


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
        self.path = os.fspath(path)
        self.sync: SyncMode = sync
        self.busy_timeout = busy_timeout
        self._clock = clock or now_ms
        self._link = Reconnecting(
            self.path, sync=sync, busy_timeout=busy_timeout, create=create, file_mode=file_mode
        )
        conn = self._link.get()
        try:
            self.applied_migrations = schema.ensure_current(
                conn, busy_timeout=busy_timeout, path=self.path
            )
        except BaseException:
            self._link.discard()
            raise
        self._topics: dict[str, _TopicMeta] = {}
        self._round_robin = RoundRobin()
        #: Bytes to write before the checkpoint interval is adapted to the free space again.
        self._until_tune = _TUNE_EVERY_BYTES
        self._low_space = self.path != ":memory:" and low_on_space(self.path, LOW_SPACE_BYTES)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._link.discard()

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection; a new one when a write failed with an I/O error on the last."""
        conn = self._link.current  # the hot path: one attribute read
        if conn is not None:
            return conn
        if self._closed:
            raise InvalidArgumentError("the broker is closed")
        return self._link.get()

    @property
    def _live(self) -> sqlite3.Connection | None:
        """The open connection, None between an I/O error and the next use (for tests)."""
        return self._link.current

    def __enter__(self) -> "Broker":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for read-only inspection (do not begin transactions)."""
        return self._conn

    def _write(self) -> WriteTransaction:
        if self._closed:
            raise InvalidArgumentError("the broker is closed")
        return WriteTransaction(self._conn, self.busy_timeout, self.path, self._link.discard)

    def _read(self) -> ReadScope:
        if self._closed:
            raise InvalidArgumentError("the broker is closed")
        return ReadScope(self.path)

    def now(self) -> int:
        """The broker's clock: milliseconds since the epoch."""
        return self._clock()

    def _tune(self) -> None:
        """Adapt the connection's checkpoint interval to the free space (a long-running
        producer sees the disk fill up; see :func:`pubsub.db.connection.tune_checkpoints`)."""
        from pubsub.db.connection import tune_checkpoints

        self._until_tune = _TUNE_EVERY_BYTES
        if self.path != ":memory:":
            with self._read():
                self._low_space = tune_checkpoints(self._conn, self.path)

    @property
    def low_on_space(self) -> bool:
        """True when the database's file system had less than 64 MiB free at the last look
        (on opening, then after every 4 MiB produced).

        Checkpoints then run every 256 KiB of WAL, and ``pubsub produce`` commits its input
        in transactions of at most 128 KiB: what a disk that fills up leaves in the WAL must
        fit in the space reserve, or retention cannot win the disk back (see
        :mod:`pubsub.space`). A :meth:`produce_batch` is one transaction whatever its size.
        """
        return self._low_space

    # -- topic metadata cache --------------------------------------------------------------

    def _load_meta(self, name: str) -> _TopicMeta:
        conn = self._conn
        row = catalog.topic_get_by_name(conn, name)
        if row is None:
            self._topics.pop(name, None)
            raise TopicNotFoundError(name)
        settings = dict(
            conn.execute(
                "SELECT key, value FROM topic_configs WHERE topic_id = ? "
                "AND key IN ('max.message.bytes', 'cleanup.policy')",
                (row.topic_id,),
            ).fetchall()
        )
        meta = _TopicMeta(
            row.topic_id,
            row.name,
            row.partition_count,
            row.config_version,
            int(settings.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)),
            "compact" in settings.get("cleanup.policy", "delete"),
        )
        self._topics[name] = meta
        return meta

    def _meta(self, name: str) -> _TopicMeta:
        meta = self._topics.get(name)
        if meta is not None:
            return meta
        with self._read():
            return self._load_meta(name)

    def _meta_for_partition(self, name: str, partition: int) -> _TopicMeta:
        """Metadata of a topic that must have ``partition`` (refreshed once if it seems not)."""
        meta = self._meta(name)
        if not 0 <= partition < meta.partitions:
            self._forget(name)
            meta = self._meta(name)
        _check_partition_range(partition, meta.partitions, 0, record=False)
        return meta

    def _forget(self, name: str) -> None:
        self._topics.pop(name, None)

    # -- topics ----------------------------------------------------------------------------

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
        from pubsub import config as topic_config
        from pubsub.db import retention

        topic_config.validate_name(name)
        topic_config.validate_partitions(partitions)
        configs = topic_config.normalise_config(config or {})
        with self._write() as conn:
            if catalog.topic_get_by_name(conn, name) is not None:
                if not if_not_exists:
                    raise TopicExistsError(name)
            else:
                configs = {**catalog.defaults_get(conn), **configs}
                topic_id = catalog.topic_insert(conn, name, partitions, self._clock(), configs)
                if "compact" in configs.get("cleanup.policy", ""):
                    for partition in range(partitions):
                        retention.create_compaction_indexes(conn, topic_id, partition)
        self._forget(name)
        return self.describe_topic(name)

    def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name, with partition counts and sizes."""
        from pubsub import config as topic_config

        with self._read():
            conn = self._conn
            rows = catalog.topic_list(conn)
            configs: dict[int, dict[str, str]] = {}
            for topic_id, key, value in conn.execute(
                "SELECT topic_id, key, value FROM topic_configs"
            ):
                configs.setdefault(topic_id, {})[key] = value
            parts: dict[int, list[PartitionInfo]] = {}
            for row in conn.execute(
                "SELECT topic_id, partition, log_start_offset, next_offset, record_count, "
                "byte_count, max_timestamp FROM partitions ORDER BY topic_id, partition"
            ):
                parts.setdefault(row[0], []).append(_partition_info(row[1:]))
        return [
            TopicInfo(
                name=row.name,
                partitions=row.partition_count,
                config=topic_config.effective_config(configs.get(row.topic_id, {})),
                overrides=configs.get(row.topic_id, {}),
                created_ms=row.created_ms,
                partition_info=tuple(parts.get(row.topic_id, ())),
            )
            for row in rows
        ]

    def describe_topic(self, name: str) -> TopicInfo:
        """A topic with its configuration and, per partition, offsets, records and bytes."""
        from pubsub import config as topic_config

        with self._read():
            conn = self._conn
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            overrides = catalog.configs_get(conn, row.topic_id)
            parts = conn.execute(
                "SELECT partition, log_start_offset, next_offset, record_count, byte_count, "
                "max_timestamp FROM partitions WHERE topic_id = ? ORDER BY partition",
                (row.topic_id,),
            ).fetchall()
        return TopicInfo(
            name=row.name,
            partitions=row.partition_count,
            config=topic_config.effective_config(overrides),
            overrides=overrides,
            created_ms=row.created_ms,
            partition_info=tuple(_partition_info(p) for p in parts),
        )

    def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, object] | None = None,
        delete_config: Iterable[str] = (),
    ) -> TopicInfo:
        """Add partitions (never remove: keys would move) and set or reset configuration."""
        from pubsub import config as topic_config
        from pubsub.db import retention

        configs = topic_config.normalise_config(config or {})
        to_delete = list(delete_config)
        for key in to_delete:
            if key not in topic_config.TOPIC_CONFIGS:
                raise InvalidArgumentError(
                    f"unknown topic config {key!r}",
                    hint="known keys: " + ", ".join(sorted(topic_config.TOPIC_CONFIGS)),
                )
        if partitions is not None:
            topic_config.validate_partitions(partitions)

        def alter(conn: sqlite3.Connection) -> None:
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            count = row.partition_count
            if partitions is not None and partitions != row.partition_count:
                if partitions < row.partition_count:
                    raise InvalidArgumentError(
                        f"topic {name!r} has {row.partition_count} partitions; "
                        "the count can only grow",
                        hint="removing partitions would lose records and move keys",
                    )
                catalog.partitions_add(conn, row.topic_id, row.partition_count, partitions)
                catalog.topic_set_partition_count(conn, row.topic_id, partitions)
                count = partitions
            if configs:
                catalog.configs_set(conn, row.topic_id, configs)
            if to_delete:
                catalog.configs_delete(conn, row.topic_id, to_delete)
            policy = catalog.configs_get(conn, row.topic_id).get("cleanup.policy", "delete")
            for partition in range(count):
                if "compact" in policy:
                    retention.create_compaction_indexes(conn, row.topic_id, partition)
                else:
                    retention.drop_compaction_indexes(conn, row.topic_id, partition)
            catalog.topic_bump_version(conn, row.topic_id)

        self._write_or_borrow(alter)
        self._forget(name)
        return self.describe_topic(name)

    def _write_or_borrow(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """``work(conn)`` in a write transaction; on a full disk once more with part of the
        space reserve released: a small write such as setting a retention policy must work
        there, as it is how the space is won back."""
        try:
            with self._write() as conn:
                work(conn)
        except StorageFullError:
            from pubsub.db.files import release_reserve

            if self.path == ":memory:" or not release_reserve(self.path, _BORROW_BYTES):
                raise
            with self._write() as conn:
                work(conn)

    def delete_topic(self, name: str) -> None:
        """Delete a topic, its records and every group offset on it.

        On a full disk this uses the space reserve as retention does (see :mod:`pubsub.space`):
        dropping a table writes almost nothing once freed pages are not zeroed, and the space
        goes back to the file system. Raises :class:`~pubsub.errors.StorageFullError` only
        when even that finds no room.
        """
        from pubsub.space import Room

        with self._read():
            if catalog.topic_get_by_name(self._conn, name) is None:
                raise TopicNotFoundError(name)

        def drop(conn: sqlite3.Connection) -> None:
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            catalog.topic_delete(conn, row)

        room = Room(self)
        try:
            room.start(deletes=True, clears=True)
            try:
                room.run(drop)
            finally:
                self._forget(name)
            if room.low:
                room.settle()
                room.vacuum()
                room.settle()
        finally:
            room.close()

    def truncate(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        *,
        before: int | None = None,
        before_time: int | None = None,
    ) -> "list[PartitionReport]":
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
        from pubsub.retention import truncate

        return truncate(self, topic, partitions, before=before, before_time=before_time)

    # -- produce ---------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes | str | None,
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Append one record in its own transaction; return where it was written.

        The record is durable when this returns (under ``sync="full"``). Raises
        :class:`~pubsub.errors.InvalidRecordError` for a record the topic cannot take
        (nothing is written), :class:`~pubsub.errors.TopicNotFoundError`,
        :class:`~pubsub.errors.BusyError` after the busy timeout.
        """
        value_b = _as_bytes(value, "value", 0)
        key_b = _as_bytes(key, "key", 0)
        header_raw = encode_headers(headers)
        if partition is not None:
            _check_partition_type(partition, 0)
        if timestamp is not None:
            _check_timestamp(timestamp, 0)
        # One record is the common case of shell loops and request handlers: a short path.
        size = (
            (len(value_b) if value_b is not None else 0)
            + (len(key_b) if key_b is not None else 0)
            + _headers_size(header_raw)
        )
        cached = topic in self._topics
        meta = self._meta(topic)
        for _attempt in range(5):
            try:
                if size > meta.max_message_bytes:
                    raise _too_large(meta, 0, size)
                if meta.compacted and key_b is None:
                    raise _needs_key(meta, 0)
                if partition is not None:
                    chosen = _check_partition_range(partition, meta.partitions, 0)
                elif key_b is not None:
                    chosen = partition_for_key(key_b, meta.partitions)
                else:
                    chosen = self._round_robin.next(meta.partitions)
            except InvalidRecordError:
                if not cached:  # the record may be valid under newer metadata
                    raise
            else:
                try:
                    with self._write() as conn:
                        state = log.append_state(conn, meta.topic_id, chosen)
                        if state is None or state.config_version != meta.config_version:
                            raise _StaleMetadata
                        ts = self._clock() if timestamp is None else timestamp
                        offset = log.append_one(
                            conn, meta.topic_id, chosen, state, key_b, value_b, header_raw, ts, size
                        )
                    return RecordMetadata(topic, chosen, offset, ts)
                except (_StaleMetadata, TopicDeletedError):
                    pass
            cached = False
            self._forget(topic)
            meta = self._meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

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
        return self._produce_batch(topic, messages, key, headers, partition)

    def _produce_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        """:meth:`produce_batch`; ``inside`` runs in the same transaction after the append."""
        items = messages if isinstance(messages, list) else list(messages)
        batch = _Batch()
        key_b = _as_bytes(key, "key", 0)
        header_raw = encode_headers(headers)
        partition_c = None if partition is None else _check_partition_type(partition, 0)
        if set(map(type, items)) <= {bytes}:
            batch.values = cast(list[bytes | None], items)
            batch.key_const = key_b
            batch.header_const = header_raw
            batch.partition_const = partition_c
        else:
            self._normalise_mixed(batch, items, key_b, header_raw, partition_c)
        return self._append(topic, batch, inside)

    def _normalise_mixed(
        self,
        batch: _Batch,
        items: Sequence[Message | bytes | str | None],
        key: bytes | None,
        header_raw: str | None,
        partition: int | None,
    ) -> None:
        values: list[bytes | None] = []
        keys: list[bytes | None] = []
        headers: list[str | None] = []
        partitions: list[int | None] = []
        timestamps: list[int] = []
        any_timestamp = False
        for index, item in enumerate(items):
            if isinstance(item, Message):
                values.append(_as_bytes(item.value, "value", index))
                keys.append(_as_bytes(item.key, "key", index))
                try:
                    headers.append(encode_headers(item.headers))
                except InvalidArgumentError as exc:
                    raise InvalidRecordError(str(exc), index=index, hint=exc.hint) from None
                partitions.append(
                    None if item.partition is None else _check_partition_type(item.partition, index)
                )
                if item.timestamp is not None:
                    any_timestamp = True
                    timestamps.append(_check_timestamp(item.timestamp, index))
                else:
                    timestamps.append(-1)
            else:
                values.append(_as_bytes(item, "value", index))
                keys.append(key)
                headers.append(header_raw)
                partitions.append(partition)
                timestamps.append(-1)
        batch.values = values
        batch.keys = keys
        batch.headers = headers
        batch.partitions = partitions
        if any_timestamp:
            batch.timestamps = timestamps
        batch.sizes = [
            (len(v) if v is not None else 0) + (len(k) if k is not None else 0) + _headers_size(h)
            for v, k, h in zip(values, keys, headers, strict=True)
        ]

    def _append(
        self,
        topic: str,
        batch: _Batch,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        if not batch.values:
            self._meta(topic)  # an unknown topic is still an error
            if inside is not None:
                with self._write() as conn:
                    inside(conn)
            return ProduceResult(topic, {}, 0, [], [])
        cached = topic in self._topics
        meta = self._meta(topic)
        for _attempt in range(5):
            try:
                return self._append_once(meta, batch, inside)
            except (_StaleMetadata, TopicDeletedError):
                pass
            except InvalidRecordError:
                # The record may be valid under a newer partition count or size limit.
                if not cached:
                    raise
            cached = False
            self._forget(topic)
            meta = self._meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def _append_once(
        self,
        meta: _TopicMeta,
        batch: _Batch,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        # routes: the partitions written; members: each one's record indices (None when the
        # whole batch goes to one partition); byte_counts: bytes per partition.
        routes, members, byte_counts = self._sizes_and_routes(meta, batch)
        values = batch.values
        self._until_tune -= sum(byte_counts.values()) + 4096  # a commit writes a page at least
        if self._until_tune <= 0:
            self._tune()
        with self._write() as conn:
            now = self._clock()
            filled = _fill_timestamps(batch.timestamps, now)
            bases: dict[int, tuple[int, int]] = {}
            for partition in routes:
                state = log.append_state(conn, meta.topic_id, partition)
                if state is None or state.config_version != meta.config_version:
                    raise _StaleMetadata
                if members is None:
                    base = log.append(
                        conn,
                        meta.topic_id,
                        partition,
                        state,
                        values=values,
                        keys=_column(batch.keys, batch.key_const, len(values)),
                        headers=_column(batch.headers, batch.header_const, len(values)),
                        timestamps=filled,
                        now_ms=now,
                        byte_count=byte_counts[partition],
                    )
                    bases[partition] = (base, len(values))
                else:
                    indices = members[partition]
                    sub_ts = None if filled is None else [filled[i] for i in indices]
                    base = log.append(
                        conn,
                        meta.topic_id,
                        partition,
                        state,
                        values=[values[i] for i in indices],
                        keys=None if batch.keys is None else [batch.keys[i] for i in indices],
                        headers=None
                        if batch.headers is None
                        else [batch.headers[i] for i in indices],
                        timestamps=sub_ts,
                        now_ms=now,
                        byte_count=byte_counts[partition],
                    )
                    bases[partition] = (base, len(indices))
            if inside is not None:
                inside(conn)  # more work in the same transaction (e.g. commit offsets)
        timestamps: int | list[int] = now if filled is None else filled
        if members is None:
            return ProduceResult(meta.name, bases, timestamps)
        record_partitions = [0] * len(values)
        ranks = [0] * len(values)
        for partition, indices in members.items():
            for rank, index in enumerate(indices):
                record_partitions[index] = partition
                ranks[index] = rank
        return ProduceResult(meta.name, bases, timestamps, record_partitions, ranks)

    def _sizes_and_routes(
        self, meta: _TopicMeta, batch: _Batch
    ) -> tuple[list[int], dict[int, list[int]] | None, dict[int, int]]:
        """Validate sizes and partitions; choose the partition of each record."""
        limit = meta.max_message_bytes
        n = len(batch.values)
        if batch.sizes is None:
            # Fast path: every value is bytes and key/headers are shared; C-level scans only.
            values = cast(list[bytes], batch.values)
            extra = (len(batch.key_const) if batch.key_const is not None else 0) + _headers_size(
                batch.header_const
            )
            if max(map(len, values)) + extra > limit:
                index = next(i for i, v in enumerate(values) if len(v) + extra > limit)
                raise _too_large(meta, index, len(values[index]) + extra)
            total = sum(map(len, values)) + extra * n
        else:
            for index, size in enumerate(batch.sizes):
                if size > limit:
                    raise _too_large(meta, index, size)
            total = sum(batch.sizes)

        if meta.compacted:
            missing = (
                (0 if batch.key_const is None else None)
                if batch.keys is None
                else next((i for i, key in enumerate(batch.keys) if key is None), None)
            )
            if missing is not None:
                raise _needs_key(meta, missing)
        count = meta.partitions
        if batch.partitions is None:
            if batch.partition_const is not None:
                chosen = _check_partition_range(batch.partition_const, count, 0)
            elif batch.key_const is not None:
                chosen = partition_for_key(batch.key_const, count)
            else:
                chosen = self._round_robin.next(count)
            return [chosen], None, {chosen: total}

        sticky: int | None = None
        members: dict[int, list[int]] = {}
        byte_counts: dict[int, int] = {}
        keys = batch.keys
        assert batch.sizes is not None
        for index, explicit in enumerate(batch.partitions):
            if explicit is not None:
                partition = _check_partition_range(explicit, count, index)
            else:
                key = keys[index] if keys is not None else None
                if key is not None:
                    partition = partition_for_key(key, count)
                else:
                    if sticky is None:
                        sticky = self._round_robin.next(count)
                    partition = sticky
            members.setdefault(partition, []).append(index)
            byte_counts[partition] = byte_counts.get(partition, 0) + batch.sizes[index]
        if len(members) == 1:
            (only,) = members
            return [only], None, byte_counts
        return sorted(members), members, byte_counts

    # -- read ------------------------------------------------------------------------------

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
        if max_records < 1:
            raise InvalidArgumentError("max_records must be at least 1")
        meta = self._meta_for_partition(topic, partition)
        with self._read():
            marks = self._conn.execute(
                "SELECT log_start_offset, next_offset FROM partitions "
                "WHERE topic_id = ? AND partition = ?",
                (meta.topic_id, partition),
            ).fetchone()
            if marks is None:
                self._forget(topic)
                raise TopicNotFoundError(topic)
            start, end = marks
            if not start <= offset <= end:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is out of range for {topic}[{partition}]",
                    offset=offset,
                    log_start_offset=start,
                    next_offset=end,
                )
        rows = self._read_rows(meta, partition, offset, end, max_records)
        if max_bytes is not None:
            rows = cut_to_bytes(rows, max_bytes)
        return to_records(meta.name, partition, rows)

    def _read_rows(
        self, meta: _TopicMeta, partition: int, offset: int, end: int, limit: int
    ) -> list[log.RecordRow]:
        """Rows of ``[offset, end)``; a topic deleted meanwhile is reported as not found."""
        try:
            with self._read():
                return log.read_range(self._conn, meta.topic_id, partition, offset, end, limit)
        except TopicDeletedError:
            self._forget(meta.name)
            raise TopicNotFoundError(meta.name) from None

    def _read_value_rows(
        self, meta: _TopicMeta, partition: int, offset: int, end: int, limit: int
    ) -> list[log.ValueRow]:
        """:meth:`_read_rows` with only (offset, value) of each row (raw output's fast path)."""
        try:
            with self._read():
                return log.read_values(self._conn, meta.topic_id, partition, offset, end, limit)
        except TopicDeletedError:
            self._forget(meta.name)
            raise TopicNotFoundError(meta.name) from None

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (log start offset, next offset)."""
        for _attempt in range(2):
            meta = self._meta(topic)
            with self._read():
                marks = log.watermarks(self._conn, meta.topic_id)
            if marks:
                return {m.partition: (m.log_start_offset, m.next_offset) for m in marks}
            self._forget(topic)  # deleted, or deleted and created again: look once more
        raise TopicNotFoundError(topic)

    def settled_watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """:meth:`watermarks` read while holding the write lock (a transaction that writes
        nothing, so nothing is synced to disk).

        No append is in progress then, and appends stamp their records under the same lock:
        a record appended after this call has a timestamp from after it (unless its producer
        set one). ``consume -f --until @TIME`` uses this to end a partition that stays quiet.
        """
        meta = self._meta(topic)
        with self._write() as conn:
            marks = log.watermarks(conn, meta.topic_id)
        if not marks:
            self._forget(topic)
            raise TopicNotFoundError(topic)
        return {m.partition: (m.log_start_offset, m.next_offset) for m in marks}

    def earliest_offset(self, topic: str, partition: int) -> int:
        """The first offset still stored (Kafka's log start offset)."""
        return self._partition_marks(topic, partition)[0]

    def latest_offset(self, topic: str, partition: int) -> int:
        """The offset the next record will get (Kafka's log end offset / high watermark)."""
        return self._partition_marks(topic, partition)[1]

    def _partition_marks(self, topic: str, partition: int) -> tuple[int, int]:
        marks = self.watermarks(topic)
        if partition not in marks:
            raise InvalidArgumentError(
                f"topic {topic!r} has no partition {partition}",
                hint=f"partitions are 0 to {len(marks) - 1}",
            )
        return marks[partition]

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The earliest offset whose timestamp is >= ``timestamp`` (ms), or None if none is.

        O(log n) through the time index, whatever the order of the timestamps.
        """
        meta = self._meta_for_partition(topic, partition)
        start, _ = self._partition_marks(topic, partition)
        with self._read():
            return log.offset_for_timestamp(self._conn, meta.topic_id, partition, timestamp, start)

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of a topic."""
        meta = self._meta(topic)
        return [TopicPartition(topic, p) for p in range(meta.partitions)]

    def refresh(self, topic: str) -> None:
        """Forget cached metadata of ``topic`` (partition count, limits)."""
        self._forget(topic)

    # -- consumer groups -------------------------------------------------------------------

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
        with self._write() as conn:
            self.commit_offsets_locked(conn, group, offsets, metadata=metadata)

    def commit_offsets_locked(
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
                _check_partition_range(partition, row.partition_count, 0, record=False)
                rows.append((row.topic_id, partition, offset, metadata))
                names[(row.topic_id, partition)] = f"{topic}[{partition}]"
        from pubsub.membership import boot_id, lease_clock_ms

        group_id = groups.group_id_ensure(conn, group, self._clock())
        owned = membership.live_owners(conn, group_id, names, boot_id(), lease_clock_ms())
        if owned:
            busy = ", ".join(f"{names[key]} (member {member})" for key, member in owned.items())
            raise FencedError(
                f"commit refused: live members of group {group!r} own {busy}",
                hint="members commit their own partitions; stop them first, or use "
                "'pubsub group reset-offsets' with --force",
            )
        groups.offsets_commit(conn, group_id, rows, self._clock())

    def committed_offsets(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """A group's committed offsets (all topics, or one)."""
        from pubsub.db import groups

        topic_id = None if topic is None else self._meta(topic).topic_id
        with self._read():
            rows = groups.offsets_get(self._conn, group, topic_id)
        return {TopicPartition(r.topic, r.partition): r.committed_offset for r in rows}

    def defaults(self) -> dict[str, str]:
        """The database-wide configuration copied into every new topic."""
        with self._read():
            return catalog.defaults_get(self._conn)

    def set_defaults(
        self, config: Mapping[str, object] | None = None, *, unset: Iterable[str] = ()
    ) -> dict[str, str]:
        """Set (and unset) defaults for new topics; existing topics keep their configuration."""
        from pubsub import config as topic_config

        values = topic_config.normalise_config(config or {})
        removed = list(unset)
        for key in removed:
            if key not in topic_config.TOPIC_CONFIGS:
                raise InvalidArgumentError(
                    f"unknown topic config {key!r}",
                    hint="known keys: " + ", ".join(sorted(topic_config.TOPIC_CONFIGS)),
                )
        with self._write() as conn:
            catalog.defaults_set(conn, values, removed)
            return catalog.defaults_get(conn)

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

        sweeper = Sweeper(self, dry_run=dry_run, vacuum=vacuum, wal_cap=wal_cap, progress=progress)
        return sweeper.run(topics)

    def check(self, *, quick: bool = False) -> "list[Problem]":
        """Integrity check plus pubsub's invariants; an empty list means all is well."""
        from pubsub import maintenance

        return maintenance.check(self, quick=quick)

    def vacuum(
        self, *, full: bool = False, progress: Callable[[float, float], None] | None = None
    ) -> int:
        """Return free pages to the file system (``full``: rebuild the file); pages freed."""
        from pubsub import maintenance

        return maintenance.vacuum(self, full=full, progress=progress)

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

        return maintenance.backup(self, os.fspath(path), mode=mode, progress=progress)

    def list_groups(self) -> "list[GroupInfo]":
        """Every consumer group: state, members, offsets and lag."""
        from pubsub import group_admin

        return group_admin.list_groups(self)

    def describe_group(self, group: str) -> "GroupInfo":
        """A group's state, members, and per partition its committed offset, lag and owner."""
        from pubsub import group_admin

        return group_admin.describe_group(self, group)

    def plan_offset_reset(
        self,
        group: str,
        strategy: "Strategy",
        *,
        topics: Mapping[str, Sequence[int] | None] | None = None,
        value: int | None = None,
    ) -> "list[OffsetChange]":
        """A dry run of a reset (see :func:`pubsub.group_admin.plan_reset`)."""
        from pubsub import group_admin

        return group_admin.plan_reset(self, group, strategy, topics=topics, value=value)

    def reset_offsets(
        self, group: str, plan: "Sequence[OffsetChange]", *, force: bool = False
    ) -> None:
        """Apply a reset plan in one transaction; refused with live members unless ``force``."""
        from pubsub import group_admin

        group_admin.execute_reset(self, group, plan, force=force)

    def delete_group(self, group: str) -> None:
        """Delete a group and its offsets (refused while it has live members)."""
        from pubsub import group_admin

        group_admin.delete_group(self, group)

    def delete_group_offsets(self, group: str, topic: str) -> int:
        """Delete a group's offsets on one topic; return how many partitions had one."""
        from pubsub import group_admin

        return group_admin.delete_group_offsets(self, group, topic)

    def consumer(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[TopicPartition | tuple[str, int]] | None = None,
        auto_offset_reset: "OffsetReset" = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> "Consumer":
        """A :class:`~pubsub.consumer.Consumer` sharing this broker's connection.

        The parameters are the Consumer's; the consumer must be used from this thread.
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
        )

    # -- the file --------------------------------------------------------------------------

    def info(self) -> DatabaseInfo:
        """Path, sizes, schema version, SQLite version and durability settings."""
        from pubsub.db.info import file_stats

        with self._read():
            stats = file_stats(self._conn, self.path)
            topics = self._conn.execute("SELECT count(*) FROM topics").fetchone()[0]
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
            topics=int(topics),
        )


def _partition_info(row: Sequence[int]) -> PartitionInfo:
    partition, start, end, records, nbytes, max_ts = row
    return PartitionInfo(
        partition=partition,
        log_start_offset=start,
        next_offset=end,
        records=records,
        bytes=nbytes,
        max_timestamp=None if max_ts < 0 else max_ts,
    )


def _column(per_record: list[_T] | None, const: _T, n: int) -> Iterable[_T] | None:
    if per_record is not None:
        return per_record
    if const is None:
        return None
    return repeat(const, n)


def _fill_timestamps(timestamps: list[int] | None, now: int) -> list[int] | None:
    if timestamps is None:
        return None
    return [now if ts < 0 else ts for ts in timestamps]


def _check_partition_type(partition: object, index: int) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise InvalidRecordError(f"invalid partition {partition!r}", index=index)
    return partition


def _check_partition_range(partition: int, count: int, index: int, *, record: bool = True) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < count:
        hint = f"the topic has partitions 0 to {count - 1}"
        if record:
            raise InvalidRecordError(
                f"partition {partition} does not exist", index=index, hint=hint
            )
        raise InvalidArgumentError(f"partition {partition} does not exist", hint=hint)
    return partition


def _check_timestamp(timestamp: object, index: int) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidRecordError(
            f"invalid timestamp {timestamp!r}",
            index=index,
            hint="a timestamp is milliseconds since the Unix epoch, 0 or more",
        )
    return timestamp


def _too_large(meta: _TopicMeta, index: int, size: int) -> InvalidRecordError:
    return InvalidRecordError(
        f"{size} bytes is more than max.message.bytes ({meta.max_message_bytes}) "
        f"of topic {meta.name!r}",
        index=index,
        hint=f"raise it with 'pubsub topic alter {meta.name} --max-message-bytes SIZE'",
    )


_key_of = itemgetter(2)
_value_of = itemgetter(3)


def to_records(topic: str, partition: int, rows: list[log.RecordRow]) -> list[Record]:
    """Records from stored rows: each row prefixed with (topic, partition), in C loops.

    Records are the hot path of consuming; this is about 1.3 times faster than selecting the
    topic and partition as bound columns of every row.
    """
    return list(map(_new_record, repeat(Record), map((topic, partition).__add__, rows)))


def rows_bytes(rows: Sequence[Sequence[object]]) -> int:
    """Bytes of the keys and values of stored rows (C-level loops)."""
    return _column_bytes(map(_value_of, rows)) + _column_bytes(map(_key_of, rows))


def _column_bytes(column: Iterator[Any]) -> int:
    """The bytes of a column of bytes or None: one join, or a sum when a None stops it."""
    items = list(column)
    try:
        return len(b"".join(items))
    except TypeError:
        return sum(map(len, filter(None, items)))


def _needs_key(meta: _TopicMeta, index: int) -> InvalidRecordError:
    return InvalidRecordError(
        f"topic {meta.name!r} is compacted (cleanup.policy=compact): every record needs a key",
        index=index,
        hint="give a key (-k KEY, -K SEP, or key= in the API)",
    )


def cut_to_bytes(
    rows: list[log.RecordRow], max_bytes: int, *, at_least_one: bool = True
) -> list[log.RecordRow]:
    """The longest prefix whose keys and values fit ``max_bytes``.

    With ``at_least_one`` the first row is kept even if it alone is larger, so that one big
    record cannot block a reader forever.
    """
    if rows_bytes(rows) <= max_bytes:
        return rows
    total = 0
    for index, row in enumerate(rows):
        key, value = row[2], row[3]
        total += (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
        if total > max_bytes and (index > 0 or not at_least_one):
            return rows[:index]
    return rows
