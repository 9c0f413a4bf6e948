"""The writer: produce and produce_batch, one transaction each, offsets from the counter.

Each append reads the partition's counter and config version under the write lock, inserts
the records with the offsets that follow, and moves the counter on in the same transaction
(see :mod:`pubsub.db.log`). Metadata comes from :class:`~pubsub.topics.Topics`; a config
version that changed meanwhile sends the call round once more with fresh metadata. The writer
also watches the free space of the file system, so that a producer on a filling disk keeps
what it leaves in the WAL small (see :mod:`pubsub.space`).
"""

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple, TypeVar, cast

from pubsub.db import log
from pubsub.db.files import LOW_SPACE_BYTES, low_on_space
from pubsub.db.store import Store
from pubsub.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    PubsubError,
    TopicDeletedError,
)
from pubsub.limits import PRODUCER_EXPIRATION_MS
from pubsub.partitioner import RoundRobin, partition_for_key
from pubsub.records import HeadersInput, Message, ProduceResult, RecordMetadata, encode_headers
from pubsub.topics import StaleMetadata, TopicMeta, Topics, check_partition_range

if TYPE_CHECKING:
    from pubsub.db.producers import BatchRow

__all__ = [
    "Appended",
    "Columns",
    "SequencedBatch",
    "SequencedOutcome",
    "Writer",
    "check_record_id",
]

_T = TypeVar("_T")
#: How often an idempotent producer's writes delete expired producer state of a topic.
_PRUNE_PRODUCERS_EVERY_MS = 5 * 60 * 1000
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


def _lengths(column: Sequence[bytes | None]) -> tuple[int, int]:
    """The total and the largest length of a column's bytes (None counts 0): C-level."""
    lengths = list(map(len, filter(None, column)))
    return sum(lengths), max(lengths, default=0)


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


class Columns(NamedTuple):
    """Records for one partition, column by column (:meth:`Writer.produce_columns`).

    ``keys`` None: every key is null; ``headers`` None: no record has headers (else each
    record's headers as :func:`~pubsub.records.encode_headers` stores them, or None);
    ``timestamps`` None: every record is stamped at the append (else a negative entry is).
    """

    partition: int
    values: list[bytes | None]
    keys: list[bytes | None] | None = None
    headers: list[str | None] | None = None
    timestamps: list[int] | None = None


class Appended(NamedTuple):
    """Where :meth:`Writer.produce_columns` wrote: the topic's id (the one the transaction
    checked) and per partition (first offset, number of records)."""

    topic_id: int
    offsets: dict[int, tuple[int, int]]

    @property
    def written(self) -> int:
        """How many records were written."""
        return sum(n for _, n in self.offsets.values())


class Writer:
    """Appends records to the topics of one store."""

    __slots__ = (
        "_low_space",
        "_producers_pruned",
        "_round_robin",
        "_until_tune",
        "store",
        "topics",
    )

    def __init__(self, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics
        self._round_robin = RoundRobin()
        #: Bytes to write before the checkpoint interval is adapted to the free space again.
        self._until_tune = _TUNE_EVERY_BYTES
        self._low_space = not store.in_memory and low_on_space(store.path, LOW_SPACE_BYTES)
        #: Per topic id, when expired Kafka producer state was last deleted (wall clock, ms).
        self._producers_pruned: dict[int, int] = {}

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
        id: str | None = None,
    ) -> RecordMetadata:
        """Append one record in its own transaction; return where it was written.

        The record is durable when this returns (under ``sync="full"``). With ``id``, a
        record stored under the same id within the topic's ``dedup.window.ms`` is not
        written again: its metadata comes back with ``duplicate=True`` (see
        :meth:`_produce_with_id`). Raises :class:`~pubsub.errors.InvalidRecordError` for a
        record the topic cannot take (nothing is written),
        :class:`~pubsub.errors.TopicNotFoundError`, :class:`~pubsub.errors.BusyError` after
        the busy timeout.
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
        if id is not None:
            return self._produce_with_id(
                topic, check_record_id(id), value_b, key_b, header_raw, partition, timestamp, size
            )
        cached = self.topics.cached(topic)
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            try:
                chosen = self._place(meta, size, key_b, partition)
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

    def _place(self, meta: TopicMeta, size: int, key_b: bytes | None, partition: int | None) -> int:
        """The partition of one record under ``meta``, after its size and key checks."""
        if size > meta.max_message_bytes:
            raise _too_large(meta, 0, size)
        if meta.compacted and key_b is None:
            raise _needs_key(meta, 0)
        if partition is not None:
            return check_partition_range(partition, meta.partitions, 0)
        if key_b is not None:
            return partition_for_key(key_b, meta.partitions)
        return self._round_robin.next(meta.partitions)

    def _produce_with_id(
        self,
        topic: str,
        record_id: str,
        value_b: bytes | None,
        key_b: bytes | None,
        header_raw: str | None,
        partition: int | None,
        timestamp: int | None,
        size: int,
    ) -> RecordMetadata:
        """:meth:`produce` of a record with an id, in one transaction: look the id up (rows
        past the window are deleted first), and either answer with the record found or
        append this one and remember it under the id.

        The look-up and the append share the write lock, so two processes producing the
        same id at once store it once."""
        from pubsub.db import producers

        producer = producers.record_producer(record_id)
        cached = self.topics.cached(topic)
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            try:
                chosen = self._place(meta, size, key_b, partition)
            except InvalidRecordError:
                if not cached:
                    raise
            else:
                try:
                    with self.store.write() as conn:
                        state = log.partition_get(conn, meta.topic_id, chosen)
                        if state is None or state.config_version != meta.config_version:
                            raise StaleMetadata
                        now = self.store.now()
                        since = now - meta.dedup_window_ms
                        producers.producer_state_prune_by_time(
                            conn, meta.topic_id, since, kafka=False
                        )
                        found = producers.producer_state_find_by_id(
                            conn, meta.topic_id, producer, since
                        )
                        if found is not None:
                            return RecordMetadata(
                                topic,
                                found.partition,
                                found.base_offset,
                                found.record_timestamp,
                                True,
                            )
                        ts = now if timestamp is None else timestamp
                        offset = log.record_append(
                            conn, meta.topic_id, chosen, state, key_b, value_b, header_raw, ts, size
                        )
                        producers.producer_state_insert(
                            conn,
                            meta.topic_id,
                            producer,
                            producers.BatchRow(chosen, 0, 0, -1, offset, ts, now),
                        )
                    return RecordMetadata(topic, chosen, offset, ts)
                except (StaleMetadata, TopicDeletedError):
                    pass
            cached = False
            self.topics.forget(topic)
            meta = self.topics.meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def produce_sequenced(
        self, topic: str, batches: Mapping[int, "SequencedBatch"]
    ) -> dict[int, "SequencedOutcome"]:
        """Append the batches of an idempotent producer, one per partition, in one transaction,
        checking each against what that producer wrote there before (Kafka's rules).

        Per partition, the producer's last :data:`~pubsub.db.producers.KAFKA_BATCHES_KEPT`
        batches are kept in ``producer_state``, written in the same transaction as the
        records. A batch with the epoch and sequence range of one of them is a retry: nothing
        is written and its original base offset is returned (``"duplicate"``). Otherwise an
        older epoch is ``"stale_epoch"``; a newer epoch must start at sequence 0, and the
        same epoch must continue at the last sequence + 1, or it is ``"out_of_order"``. A
        producer with no state on a partition (new, or expired) may start at any sequence,
        as Kafka's broker allows. A partition whose records the topic cannot take gets
        ``"invalid"`` with the error; the other partitions are still written.
        """
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            prepared: dict[int, _Batch] = {}
            outcomes: dict[int, SequencedOutcome] = {}
            sizes: dict[int, int] = {}
            for partition, sequenced in batches.items():
                batch = _Batch()
                try:
                    self._normalise_mixed(batch, sequenced.messages, None, None, partition)
                    _, _, byte_counts = self._sizes_and_routes(meta, batch)
                except InvalidRecordError as error:
                    outcomes[partition] = SequencedOutcome("invalid", error=error)
                    continue
                prepared[partition] = batch
                sizes[partition] = sum(byte_counts.values())
            try:
                self._append_sequenced(meta, batches, prepared, sizes, outcomes)
                return outcomes
            except (StaleMetadata, TopicDeletedError):
                pass
            self.topics.forget(topic)
            meta = self.topics.meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def new_producer_id(self) -> int:
        """A producer id never handed out before by this file (Kafka's InitProducerId): taken
        from a counter in its own transaction, so it survives restarts and never repeats."""
        from pubsub.db import producers

        with self.store.write() as conn:
            return producers.producer_ids_take(conn)

    def _append_sequenced(
        self,
        meta: TopicMeta,
        batches: Mapping[int, "SequencedBatch"],
        prepared: dict[int, _Batch],
        sizes: dict[int, int],
        outcomes: dict[int, "SequencedOutcome"],
    ) -> None:
        from pubsub.db import producers

        if not prepared:
            return
        self._until_tune -= sum(sizes.values()) + 4096
        if self._until_tune <= 0:
            self.tune()
        with self.store.write() as conn:
            now = self.store.now()
            pruned = self._producers_pruned.get(meta.topic_id, 0)
            if now - pruned >= _PRUNE_PRODUCERS_EVERY_MS or now < pruned:
                # Kafka forgets a producer idle for producer.id.expiration.ms; here its batches
                # older than that are deleted, every few minutes per topic.
                producers.producer_state_prune_by_time(
                    conn, meta.topic_id, now - PRODUCER_EXPIRATION_MS, kafka=True
                )
                self._producers_pruned[meta.topic_id] = now
            for partition, batch in prepared.items():
                sequenced = batches[partition]
                state = log.partition_get(conn, meta.topic_id, partition)
                if state is None or state.config_version != meta.config_version:
                    raise StaleMetadata
                producer = producers.kafka_producer(sequenced.producer_id)
                kept = producers.producer_state_list_by_partition(
                    conn, meta.topic_id, producer, partition
                )
                verdict, found = _sequence_verdict(kept, sequenced)
                if verdict == "duplicate":
                    assert found is not None
                    outcomes[partition] = SequencedOutcome(verdict, found.base_offset)
                    continue
                if verdict != "append":
                    outcomes[partition] = SequencedOutcome(verdict)
                    continue
                if kept and kept[-1].epoch != sequenced.epoch:
                    producers.producer_state_delete_by_producer(
                        conn, meta.topic_id, producer, partition
                    )
                    kept = []
                filled = _fill_timestamps(batch.timestamps, now)
                base = log.records_append(
                    conn,
                    meta.topic_id,
                    partition,
                    state,
                    values=batch.values,
                    keys=batch.keys,
                    headers=batch.headers,
                    timestamps=filled,
                    now_ms=now,
                    byte_count=sizes[partition],
                )
                # Kafka keeps the last 5 batches: the oldest makes room for this one.
                if len(kept) >= producers.KAFKA_BATCHES_KEPT:
                    for old in kept[: len(kept) - producers.KAFKA_BATCHES_KEPT + 1]:
                        producers.producer_state_delete_by_sequence(
                            conn, meta.topic_id, producer, partition, old.first_sequence
                        )
                producers.producer_state_insert(
                    conn,
                    meta.topic_id,
                    producer,
                    producers.BatchRow(
                        partition,
                        sequenced.first_sequence,
                        sequenced.last_sequence,
                        sequenced.epoch,
                        base,
                        now if filled is None else filled[0],
                        now,
                    ),
                )
                outcomes[partition] = SequencedOutcome("appended", base)

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

    def produce_columns(
        self,
        topic: str,
        parts: Sequence[Columns],
        *,
        inside: Callable[[sqlite3.Connection], None] | None = None,
    ) -> Appended:
        """:meth:`produce_batch` for records already split by partition and column: one
        transaction for all of ``parts`` (each partition at most once), all written or none.

        The wire server's path: values and keys must be bytes or None, timestamps ints (not
        checked again). Sizes, partitions and compaction's keys are checked as
        :meth:`produce_batch` checks them; an :class:`~pubsub.errors.InvalidRecordError`
        carries the index of the record in ``parts`` taken in order.
        """
        if not parts or not any(part.values for part in parts):
            self.produce_batch(topic, [], inside=inside)
            return Appended(self.topics.meta(topic).topic_id, {})
        cached = self.topics.cached(topic)
        meta = self.topics.meta(topic)
        for _attempt in range(5):
            try:
                return self._append_columns_once(meta, parts, inside)
            except (StaleMetadata, TopicDeletedError):
                pass
            except InvalidRecordError:
                if not cached:  # the records may be valid under newer metadata
                    raise
            cached = False
            self.topics.forget(topic)
            meta = self.topics.meta(topic)
        raise PubsubError(f"topic {topic!r} kept changing while producing; retry")

    def _append_columns_once(
        self,
        meta: TopicMeta,
        parts: Sequence[Columns],
        inside: Callable[[sqlite3.Connection], None] | None,
    ) -> Appended:
        limit = meta.max_message_bytes
        byte_counts: list[int] = []
        first = 0  # the index of a part's first record among all of them
        for part in parts:
            check_partition_range(part.partition, meta.partitions, first)
            byte_counts.append(_columns_bytes(meta, part, first, limit))
            if meta.compacted and (part.keys is None or None in part.keys):
                at = 0 if part.keys is None else part.keys.index(None)
                raise _needs_key(meta, first + at)
            first += len(part.values)
        self._until_tune -= sum(byte_counts) + 4096  # a commit writes a page at least
        if self._until_tune <= 0:
            self.tune()
        bases: dict[int, tuple[int, int]] = {}
        with self.store.write() as conn:
            now = self.store.now()
            for part, byte_count in zip(parts, byte_counts, strict=True):
                state = log.partition_get(conn, meta.topic_id, part.partition)
                if state is None or state.config_version != meta.config_version:
                    raise StaleMetadata
                base = log.records_append(
                    conn,
                    meta.topic_id,
                    part.partition,
                    state,
                    values=part.values,
                    keys=part.keys,
                    headers=part.headers,
                    timestamps=_fill_timestamps(part.timestamps, now),
                    now_ms=now,
                    byte_count=byte_count,
                )
                bases[part.partition] = (base, len(part.values))
            if inside is not None:
                inside(conn)
        return Appended(meta.topic_id, bases)

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


class SequencedBatch(NamedTuple):
    """The records of one partition from a Kafka idempotent producer, with its batch header:
    producer id and epoch, and the sequence numbers of the first and last record."""

    messages: list[Message]
    producer_id: int
    epoch: int
    first_sequence: int
    last_sequence: int


class SequencedOutcome(NamedTuple):
    """What :meth:`Writer.produce_sequenced` did with one partition's batch.

    ``verdict`` is ``appended``, ``duplicate`` (a retry: ``base_offset`` is the original's),
    ``out_of_order``, ``stale_epoch`` or ``invalid`` (``error`` says why)."""

    verdict: str
    base_offset: int = -1
    error: InvalidRecordError | None = None


#: Kafka's sequence numbers are int32 and wrap from this to 0.
_MAX_SEQUENCE = 2**31 - 1


def _sequence_verdict(
    kept: "list[BatchRow]", batch: SequencedBatch
) -> "tuple[str, BatchRow | None]":
    """Kafka's checks of an idempotent batch against the producer's kept batches (all of one
    epoch, oldest first): a retry of one of them, then the epoch, then the sequence."""
    if not kept:
        return "append", None
    current = kept[-1].epoch
    if batch.epoch == current:
        for row in kept:
            if row.first_sequence == batch.first_sequence and row.last_sequence == (
                batch.last_sequence
            ):
                return "duplicate", row
    if batch.epoch < current:
        return "stale_epoch", None
    if batch.epoch > current:
        return ("append", None) if batch.first_sequence == 0 else ("out_of_order", None)
    last = kept[-1].last_sequence
    expected = 0 if last == _MAX_SEQUENCE else last + 1
    return ("append", None) if batch.first_sequence == expected else ("out_of_order", None)


def _columns_bytes(meta: TopicMeta, part: Columns, first: int, limit: int) -> int:
    """The bytes of a part's records (keys, values, headers), after checking that none is
    larger than ``limit``; C-level scans unless some record may be too large."""
    values = part.values
    total, largest = _lengths(values)
    if part.keys is not None:
        keys_total, keys_largest = _lengths(part.keys)
        total += keys_total
        largest += keys_largest
    if part.headers is not None:
        present = list(filter(None, part.headers))
        joined = "".join(present)
        if joined.isascii():  # one byte a character: the lengths are the sizes
            total += len(joined)
            largest += max(map(len, present), default=0)
        else:
            sizes = [_headers_size(h) for h in present]
            total += sum(sizes)
            largest += max(sizes, default=0)
    if largest > limit:  # the largest value, key and headers together: maybe one record is
        keys = part.keys if part.keys is not None else repeat(None)
        headers = part.headers if part.headers is not None else repeat(None)
        for index, (v, k, h) in enumerate(zip(values, keys, headers, strict=False)):
            size = (
                (len(v) if v is not None else 0)
                + (len(k) if k is not None else 0)
                + _headers_size(h)
            )
            if size > limit:
                raise _too_large(meta, first + index, size)
    return total


def _column(per_record: list[_T] | None, const: _T, n: int) -> Iterable[_T] | None:
    if per_record is not None:
        return per_record
    if const is None:
        return None
    return repeat(const, n)


def _fill_timestamps(timestamps: list[int] | None, now: int) -> list[int] | None:
    if timestamps is None:
        return None
    if not timestamps or min(timestamps) >= 0:
        return timestamps  # every one set (a C-level scan): nothing to fill in
    return [now if ts < 0 else ts for ts in timestamps]


def check_record_id(record_id: object) -> str:
    """A record id as given to ``produce(id=)``: non-empty text of at most
    :data:`~pubsub.limits.MAX_RECORD_ID_BYTES` UTF-8 bytes."""
    from pubsub.limits import MAX_RECORD_ID_BYTES

    if not isinstance(record_id, str):
        raise InvalidArgumentError(
            f"a record id must be a string, not {type(record_id).__name__}",
            hint="use text: a request id, a file name and line, a hash of the record",
        )
    try:
        size = len(record_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError("the record id is not valid Unicode text") from None
    if not 1 <= size <= MAX_RECORD_ID_BYTES:
        raise InvalidArgumentError(
            f"a record id has 1 to {MAX_RECORD_ID_BYTES} bytes, not {size}",
            hint="use a shorter id, or a hash of a long one",
        )
    return record_id


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
