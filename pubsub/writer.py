"""The writer: produce and produce_batch, one transaction each, offsets from the counter.

Each append reads the partition's counter and config version under the write lock, inserts
the records with the offsets that follow, and moves the counter on in the same transaction
(see :mod:`pubsub.db.log`). Metadata comes from :class:`~pubsub.topics.Topics`; a config
version that changed meanwhile sends the call round once more with fresh metadata. The writer
also watches the free space of the file system, so that a producer on a filling disk keeps
what it leaves in the WAL small (see :mod:`pubsub.space`).
"""

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import TypeVar, cast

from pubsub.db import log
from pubsub.db.files import LOW_SPACE_BYTES, low_on_space
from pubsub.db.store import Store
from pubsub.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    PubsubError,
    TopicDeletedError,
)
from pubsub.partitioner import RoundRobin, partition_for_key
from pubsub.records import HeadersInput, Message, ProduceResult, RecordMetadata, encode_headers
from pubsub.topics import StaleMetadata, TopicMeta, Topics, check_partition_range

__all__ = ["Writer"]

_T = TypeVar("_T")
#: A producer looks at the free space again after writing this much.
_TUNE_EVERY_BYTES = 4 * 1024 * 1024


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


class Writer:
    """Appends records to the topics of one store."""

    __slots__ = ("_low_space", "_round_robin", "_until_tune", "store", "topics")

    def __init__(self, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics
        self._round_robin = RoundRobin()
        #: Bytes to write before the checkpoint interval is adapted to the free space again.
        self._until_tune = _TUNE_EVERY_BYTES
        self._low_space = not store.in_memory and low_on_space(store.path, LOW_SPACE_BYTES)

    def tune(self) -> None:
        """Adapt the connection's checkpoint interval to the free space (a long-running
        producer sees the disk fill up; see :func:`pubsub.db.connection.wal_tune`)."""
        from pubsub.db.connection import wal_tune

        self._until_tune = _TUNE_EVERY_BYTES
        if self.store.path != ":memory:":
            with self.store.read():
                self._low_space = wal_tune(self.store.connection, self.store.path)

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
        cached = self.topics.cached(topic)
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            try:
                if size > meta.max_message_bytes:
                    raise _too_large(meta, 0, size)
                if meta.compacted and key_b is None:
                    raise _needs_key(meta, 0)
                if partition is not None:
                    chosen = check_partition_range(partition, meta.partitions, 0)
                elif key_b is not None:
                    chosen = partition_for_key(key_b, meta.partitions)
                else:
                    chosen = self._round_robin.next(meta.partitions)
            except InvalidRecordError:
                if not cached:  # the record may be valid under newer metadata
                    raise
            else:
                try:
                    with self.store.write() as conn:
                        state = log.partition_get(conn, meta.topic_id, chosen)
                        if state is None or state.config_version != meta.config_version:
                            raise StaleMetadata
                        ts = self.store.now() if timestamp is None else timestamp
                        offset = log.record_append(
                            conn, meta.topic_id, chosen, state, key_b, value_b, header_raw, ts, size
                        )
                    return RecordMetadata(topic, chosen, offset, ts)
                except (StaleMetadata, TopicDeletedError):
                    pass
            cached = False
            self.topics.forget(topic)
            meta = self.topics.meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def produce_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        """Append many records in one transaction: all are written or none.

        Items are :class:`Message` objects or plain values; ``key``, ``headers`` and
        ``partition`` apply to the plain values. Keyless records without a partition go
        together to the next partition in round-robin order. Returns the metadata of each
        record, in input order. On an invalid record,
        :class:`~pubsub.errors.InvalidRecordError` carries its ``index``. ``inside(conn)``
        runs in the same transaction after the append (a consumer commits its offsets there).
        """
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

    def produce_encoded(
        self,
        topic: str,
        *,
        values: list[bytes | None],
        keys: list[bytes | None],
        headers: list[str | None],
        partitions: list[int],
        timestamps: list[int],
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        """:meth:`produce_batch` from columns, with every record's partition and timestamp
        given and its headers already encoded (:func:`~pubsub.records.encode_headers`): the
        path of records copied from another log (``pubsub mirror``), which skips building
        and re-encoding a Message per record. One transaction, ``inside`` in it."""
        batch = _Batch()
        batch.values = values
        batch.keys = keys
        batch.headers = headers
        batch.partitions = cast(list[int | None], partitions)
        batch.timestamps = timestamps
        batch.sizes = [
            (len(v) if v is not None else 0)
            + (len(k) if k is not None else 0)
            + (len(h.encode("utf-8")) if h is not None else 0)
            for v, k, h in zip(values, keys, headers, strict=True)
        ]
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
            self.topics.meta(topic)  # an unknown topic is still an error
            if inside is not None:
                with self.store.write() as conn:
                    inside(conn)
            return ProduceResult(topic, {}, 0, [], [])
        cached = self.topics.cached(topic)
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            try:
                return self._append_once(meta, batch, inside)
            except (StaleMetadata, TopicDeletedError):
                pass
            except InvalidRecordError:
                # The record may be valid under a newer partition count or size limit.
                if not cached:
                    raise
            cached = False
            self.topics.forget(topic)
            meta = self.topics.meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def _append_once(
        self,
        meta: TopicMeta,
        batch: _Batch,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ProduceResult:
        # routes: the partitions written; members: each one's record indices (None when the
        # whole batch goes to one partition); byte_counts: bytes per partition.
        routes, members, byte_counts = self._sizes_and_routes(meta, batch)
        values = batch.values
        self._until_tune -= sum(byte_counts.values()) + 4096  # a commit writes a page at least
        if self._until_tune <= 0:
            self.tune()
        with self.store.write() as conn:
            now = self.store.now()
            filled = _fill_timestamps(batch.timestamps, now)
            bases: dict[int, tuple[int, int]] = {}
            for partition in routes:
                state = log.partition_get(conn, meta.topic_id, partition)
                if state is None or state.config_version != meta.config_version:
                    raise StaleMetadata
                if members is None:
                    base = log.records_append(
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
                    base = log.records_append(
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
        self, meta: TopicMeta, batch: _Batch
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
                chosen = check_partition_range(batch.partition_const, count, 0)
            elif batch.key_const is not None:
                chosen = partition_for_key(batch.key_const, count)
            else:
                chosen = self._round_robin.next(count)
            return [chosen], None, {chosen: total}

        assert batch.sizes is not None
        if count == 1:
            # One partition: every record goes there, keyed or not; no key is hashed.
            for index, explicit in enumerate(batch.partitions):
                if explicit is not None:
                    check_partition_range(explicit, 1, index)
            return [0], None, {0: total}
        sticky: int | None = None
        members: dict[int, list[int]] = {}
        byte_counts: dict[int, int] = {}
        keys = batch.keys
        for index, explicit in enumerate(batch.partitions):
            if explicit is not None:
                partition = check_partition_range(explicit, count, index)
            else:
                key = keys[index] if keys is not None else None
                if key is not None:
                    partition = partition_for_key(key, count)  # memoised per key
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


def _check_timestamp(timestamp: object, index: int) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidRecordError(
            f"invalid timestamp {timestamp!r}",
            index=index,
            hint="a timestamp is milliseconds since the Unix epoch, 0 or more",
        )
    return timestamp


def _too_large(meta: TopicMeta, index: int, size: int) -> InvalidRecordError:
    return InvalidRecordError(
        f"{size} bytes is more than max.message.bytes ({meta.max_message_bytes}) "
        f"of topic {meta.name!r}",
        index=index,
        hint=f"raise it with 'pubsub topic alter {meta.name} --max-message-bytes SIZE'",
    )


def _needs_key(meta: TopicMeta, index: int) -> InvalidRecordError:
    return InvalidRecordError(
        f"topic {meta.name!r} is compacted (cleanup.policy=compact): every record needs a key",
        index=index,
        hint="give a key (-k KEY, -K SEP, or key= in the API)",
    )
