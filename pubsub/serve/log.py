"""Produce, Fetch, ListOffsets and Metadata on a Broker: Kafka requests in, responses out.

Each function runs in a worker thread on that thread's own :class:`~pubsub.broker.Broker`
and returns a response object for :func:`pubsub.kafka.wire.codec.encode_response`. Errors a
client can cause become Kafka error codes per topic or partition, as Kafka's broker sends them;
only a bug escapes as an exception (the server then closes that connection).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from pubsub.broker import Broker
from pubsub.config import validate_name
from pubsub.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    PubsubError,
    TopicNotFoundError,
)
from pubsub.kafka.wire.codec import (
    ApiKey,
    ColumnBatch,
    CorruptBatch,
    TimestampType,
    decode_batch_columns,
    encode_rows,
    response_class,
)
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.reader import Reader, cut_to_bytes
from pubsub.records import Message, decode_headers, encode_headers
from pubsub.serve.cache import BatchCache, CachedBatch
from pubsub.serve.topic_ids import topic_uuid
from pubsub.topics import TopicMeta
from pubsub.writer import Columns, SequencedBatch

__all__ = [
    "NODE_ID",
    "Advertised",
    "Ahead",
    "ProduceOutcome",
    "cluster_id_for",
    "fetch",
    "list_offsets",
    "metadata",
    "produce",
    "read_ahead",
]

#: The node id of the one broker a server is.
NODE_ID = 1

#: ListOffsets' special timestamps.
LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3

#: At most this many rows are read for one partition of one fetch; at most one per 100 bytes
#: of its budget (rows beyond the budget would be read only to be cut off).
_MAX_FETCH_ROWS = 20_000

#: A batch's first 16 bytes: base offset, batch length, partition leader epoch.
_BASE_AND_LENGTH = struct.Struct(">qii")

#: How long a fetch waits for the range it asks for while that is being read ahead (seconds).
_AHEAD_WAIT = 1.0


class Advertised(NamedTuple):
    """The address clients are told to connect to, and the cluster id."""

    host: str
    port: int
    cluster_id: str


def cluster_id_for(path: str) -> str:
    """A stable cluster id for a database file: 22 characters of base64url, as Kafka's are,
    derived from the file's absolute path and inode (the file has no id of its own)."""
    real = os.path.realpath(path)
    try:
        inode = os.stat(real).st_ino
    except OSError:
        inode = 0
    digest = hashlib.sha256(f"{real}\0{inode}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


# -- Metadata --------------------------------------------------------------------------------


def metadata(
    broker: Broker,
    request: Any,
    version: int,
    advertised: Advertised,
    *,
    auto_create: bool,
    auto_create_partitions: int = 1,
) -> Any:
    """A MetadataResponse: the one broker, the cluster id, and the topics asked for (all of
    them for a null list, or an empty one before v1), created first when ``auto_create``
    and the client allows it."""
    cls = response_class(ApiKey.METADATA)
    topic_cls = cls.MetadataResponseTopic
    partition_cls = topic_cls.MetadataResponsePartition
    wanted: list[str] | None
    if request.topics is None or (version == 0 and not request.topics):
        wanted = None
    else:
        wanted = [t.name for t in request.topics if t.name is not None]
    allow_create = auto_create and (version < 4 or bool(request.allow_auto_topic_creation))
    known = {info.name: info.partitions for info in broker.list_topics()}
    topics = []
    # v12+ may name topics by id alone (share consumers resolve their assignment so).
    by_id = [
        t.topic_id
        for t in request.topics or ()
        if t.name is None and getattr(t, "topic_id", None) is not None and t.topic_id.int
    ]
    if by_id and wanted is not None:
        names = _names_by_id(broker, advertised.cluster_id, known)
        for topic_id in by_id:
            name = names.get(topic_id)
            if name is not None:
                wanted.append(name)
            else:
                topics.append(
                    topic_cls(
                        error_code=int(ErrorCode.UNKNOWN_TOPIC_ID),
                        name=None,
                        topic_id=topic_id,
                        is_internal=False,
                        partitions=[],
                    )
                )
    for name in sorted(known) if wanted is None else wanted:
        count = known.get(name)
        error = ErrorCode.NONE
        if count is None:
            error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            try:
                validate_name(name)
            except InvalidArgumentError:
                error = ErrorCode.INVALID_TOPIC_EXCEPTION
            else:
                if allow_create:
                    try:
                        count = broker.create_topic(
                            name, auto_create_partitions, if_not_exists=True
                        ).partitions
                        error = ErrorCode.NONE
                    except PubsubError:
                        error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        partitions = [
            partition_cls(
                error_code=0,
                partition_index=index,
                leader_id=NODE_ID,
                leader_epoch=0,
                replica_nodes=[NODE_ID],
                isr_nodes=[NODE_ID],
                offline_replicas=[],
            )
            for index in range(count or 0)
        ]
        topic_id = None
        if count is not None:
            with contextlib.suppress(TopicNotFoundError):  # deleted meanwhile: no id
                topic_id = topic_uuid(
                    advertised.cluster_id, broker.services.topics.meta(name).topic_id
                )
        topics.append(
            topic_cls(
                error_code=int(error),
                name=name,
                topic_id=topic_id,
                is_internal=False,
                partitions=partitions,
            )
        )
    return cls(
        throttle_time_ms=0,
        brokers=[
            cls.MetadataResponseBroker(
                node_id=NODE_ID, host=advertised.host, port=advertised.port, rack=None
            )
        ],
        cluster_id=advertised.cluster_id,
        controller_id=NODE_ID,
        topics=topics,
        error_code=0,
    )


def _names_by_id(broker: Broker, cluster_id: str, known: dict[str, int]) -> dict[Any, str]:
    """Topic names by topic id, for every topic of ``known``."""
    names: dict[Any, str] = {}
    for name in known:
        with contextlib.suppress(TopicNotFoundError):
            names[topic_uuid(cluster_id, broker.services.topics.meta(name).topic_id)] = name
    return names


# -- Produce ---------------------------------------------------------------------------------


class PartitionOutcome(NamedTuple):
    """What a Produce did for one partition."""

    partition: int
    error: int
    base_offset: int = -1
    message: str | None = None
    record_errors: tuple[tuple[int, str | None], ...] = ()
    #: The partition's first stored offset after the append (Kafka's ``log_start_offset``).
    log_start: int = -1


class ProduceOutcome(NamedTuple):
    """What a Produce did, per topic, and whether anything was written."""

    topics: list[tuple[str, list[PartitionOutcome]]]
    written: int

    @property
    def failed(self) -> bool:
        """True when some partition got an error."""
        return any(p.error for _, parts in self.topics for p in parts)


def produce(broker: Broker, request: Any, *, cache: BatchCache | None = None) -> ProduceOutcome:
    """Append the record batches of a ProduceRequest: each topic in one transaction, each
    partition checked on its own (a refused partition does not stop the others).

    With a ``cache``, batches a fetch can carry as they came (see :func:`_servable`) are put
    there once written, at their offsets: a consumer at the tail reads them without a query.
    """
    outcomes: list[tuple[str, list[PartitionOutcome]]] = []
    written = 0
    for topic_data in request.topic_data:
        name = topic_data.name
        parts, count = _produce_topic(broker, name, topic_data.partition_data, cache)
        outcomes.append((name, parts))
        written += count
    return ProduceOutcome(outcomes, written)


def _produce_topic(
    broker: Broker, name: str, partition_data: Sequence[Any], cache: BatchCache | None = None
) -> tuple[list[PartitionOutcome], int]:
    topics = broker.services.topics
    try:
        topics.forget(name)  # a config change by another process must count now
        meta = topics.meta(name)
    except (TopicNotFoundError, InvalidArgumentError):
        return [
            PartitionOutcome(p.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for p in partition_data
        ], 0
    done: dict[int, PartitionOutcome] = {}
    pending: dict[int, Columns] = {}
    servable: dict[int, list[tuple[int, bytes]] | None] = {}
    sequenced: dict[int, SequencedBatch] = {}
    for data in partition_data:
        index = data.index
        if not 0 <= index < meta.partitions:
            done[index] = PartitionOutcome(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            continue
        try:
            columns, batches, sequence = _columns(
                data.records, index, meta.max_message_bytes, meta.compacted
            )
        except _Refused as refused:
            done[index] = refused.outcome(index)
            continue
        if sequence is not None or index in sequenced:
            # An idempotent producer's batch: alone for its partition, with its sequence.
            if sequence is None or index in sequenced or index in pending:
                done[index] = PartitionOutcome(
                    index, ErrorCode.INVALID_RECORD, message="one record batch per partition"
                )
                sequenced.pop(index, None)
                pending.pop(index, None)
                servable.pop(index, None)
                continue
            sequenced[index] = SequencedBatch(_messages(batches, index), *sequence)
            continue
        earlier = pending.get(index)
        pending[index] = columns if earlier is None else _joined(earlier, columns)
        if cache is not None:
            carried = _servable(data.records, batches)
            known = servable.get(index, [])
            servable[index] = None if carried is None or known is None else known + carried
    written = 0
    if sequenced:
        written += _produce_sequenced(broker, name, sequenced, done)
    if pending:
        writer = broker.services.writer
        try:
            result = writer.produce_columns(name, list(pending.values()))
        except InvalidRecordError:
            result = None  # one partition's records: find it by producing each on its own
        except TopicNotFoundError:
            for index in pending:
                done[index] = PartitionOutcome(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            pending = {}
        if result is not None:
            bases = result.offsets
            for index in pending:
                done[index] = PartitionOutcome(index, ErrorCode.NONE, bases[index][0])
            written = result.written
            if cache is not None:
                _remember(cache, result.topic_id, bases, servable)
        else:
            for index, columns in pending.items():
                done[index] = _produce_partition(broker, name, index, columns)
                if not done[index].error:
                    written += len(columns.values)
    order = [data.index for data in partition_data]
    answered = [done[index] for index in dict.fromkeys(order)]
    if any(not p.error for p in answered):
        # Kafka answers each appended partition with its log start (clients expose it, as
        # aiokafka's RecordMetadata does): read after the commit, so it is never stale.
        try:
            _, extents = broker.services.reader.extents(name)
        except (TopicNotFoundError, InvalidArgumentError):
            extents = {}
        answered = [
            p._replace(log_start=extents[p.partition][0])
            if not p.error and p.partition in extents
            else p
            for p in answered
        ]
    return answered, written


#: Kafka's answer to each verdict of an idempotent batch (a retry is a success: Kafka
#: acknowledges a duplicate of one of the last 5 batches with its original offset).
_SEQUENCE_ERRORS = {
    "appended": ErrorCode.NONE,
    "duplicate": ErrorCode.NONE,
    "out_of_order": ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    "stale_epoch": ErrorCode.INVALID_PRODUCER_EPOCH,
}


def _produce_sequenced(
    broker: Broker,
    name: str,
    sequenced: dict[int, SequencedBatch],
    done: dict[int, PartitionOutcome],
) -> int:
    """The idempotent producer's batches of one topic, in one transaction with their
    producer state; returns how many records were written."""
    try:
        outcomes = broker.services.writer.produce_sequenced(name, sequenced)
    except TopicNotFoundError:
        for index in sequenced:
            done[index] = PartitionOutcome(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return 0
    written = 0
    for index, outcome in outcomes.items():
        if outcome.error is not None:
            error = outcome.error
            if "max.message.bytes" in error.message:
                done[index] = PartitionOutcome(
                    index, ErrorCode.MESSAGE_TOO_LARGE, message=error.message
                )
            else:
                at = error.index if error.index is not None else 0
                done[index] = PartitionOutcome(
                    index,
                    ErrorCode.INVALID_RECORD,
                    message=error.message,
                    record_errors=((at, None),),
                )
            continue
        code = _SEQUENCE_ERRORS[outcome.verdict]
        done[index] = PartitionOutcome(index, code, outcome.base_offset if not code else -1)
        if outcome.verdict == "appended":
            written += len(sequenced[index].messages)
    return written


def _produce_partition(broker: Broker, name: str, index: int, columns: Columns) -> PartitionOutcome:
    try:
        result = broker.services.writer.produce_columns(name, [columns])
    except InvalidRecordError as error:
        code = ErrorCode.MESSAGE_TOO_LARGE if "max.message.bytes" in error.message else None
        at = error.index if error.index is not None else 0
        if code is not None:
            return PartitionOutcome(index, code, message=error.message)
        return PartitionOutcome(
            index, ErrorCode.INVALID_RECORD, message=error.message, record_errors=((at, None),)
        )
    except TopicNotFoundError:
        return PartitionOutcome(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    return PartitionOutcome(index, ErrorCode.NONE, result.offsets[index][0])


def _servable(records: bytes, batches: list[ColumnBatch]) -> list[tuple[int, bytes]] | None:
    """The batches of an accepted ``records`` field as (record count, bytes) when a Fetch
    can carry them as they came, with only the base offset and leader epoch set (neither is
    covered by the CRC); None otherwise.

    That is when each batch holds, in its order and nothing else, the records the log stores
    for it: uncompressed, CREATE_TIME, no producer id, offset deltas 0, 1, 2, ..., and every
    timestamp set (a missing one is stamped at the append). Its bytes then decode to the
    stored records, as :func:`~pubsub.kafka.wire.codec.encode_rows` would encode them.
    """
    out: list[tuple[int, bytes]] = []
    at = 0
    for batch in batches:
        deltas, timestamps = batch.columns.offset_deltas, batch.columns.timestamps
        count = len(deltas)
        if (
            not count
            or batch.attributes
            or batch.producer_id != -1
            or batch.producer_epoch != -1
            or batch.base_sequence != -1
            or batch.last_offset_delta != count - 1
            or deltas != list(range(count))
            or min(timestamps) < 0
            or max(timestamps) != batch.max_timestamp
        ):
            return None
        out.append((count, records[at : at + batch.size]))
        at += batch.size
    return out


def _remember(
    cache: BatchCache,
    topic_id: int,
    bases: dict[int, tuple[int, int]],
    servable: dict[int, list[tuple[int, bytes]] | None],
) -> None:
    for index, batches in servable.items():
        if not batches or index not in bases:
            continue
        offset, written = bases[index]
        if sum(count for count, _ in batches) != written:
            continue
        for count, data in batches:
            head = _BASE_AND_LENGTH.pack(offset, len(data) - 12, 0)
            cache.put(topic_id, index, CachedBatch(offset, offset + count, head + data[16:]))
            offset += count


class _Refused(Exception):
    def __init__(
        self, error: ErrorCode, message: str, record_errors: tuple[tuple[int, str | None], ...] = ()
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.record_errors = record_errors

    def outcome(self, index: int) -> PartitionOutcome:
        return PartitionOutcome(
            index, self.error, message=self.message, record_errors=self.record_errors
        )


#: Kafka's sequence numbers are int32 and wrap from this to 0.
_MAX_SEQUENCE = 2**31 - 1

_NO_KEY = "Compacted topic cannot accept message without key."


def _columns(
    records: bytes | None, partition: int, max_message_bytes: int, compacted: bool
) -> tuple[Columns, list[ColumnBatch], tuple[int, int, int, int] | None]:
    """The records of one partition's batches, column by column, after Kafka's checks; the
    batches decoded; and for an idempotent producer's batch (there must then be only one) its
    producer id, epoch, and first and last sequence numbers."""
    if not records:
        raise _Refused(ErrorCode.CORRUPT_MESSAGE, "no record batch")
    try:
        batches = decode_batch_columns(records)
    except CorruptBatch as error:
        raise _Refused(error.error_code, error.reason) from None
    sequence: tuple[int, int, int, int] | None = None
    first = batches[0] if batches else None
    if first is not None and first.producer_id >= 0 and not first.is_transactional:
        if len(batches) != 1:
            raise _Refused(
                ErrorCode.INVALID_RECORD,
                "an idempotent producer sends exactly one record batch per partition",
            )
        if first.producer_epoch < 0 or first.base_sequence < 0:
            raise _Refused(
                ErrorCode.INVALID_RECORD,
                "a batch with a producer id needs a producer epoch and a base sequence",
            )
        delta = first.last_offset_delta
        base = first.base_sequence
        last = base + delta if base <= _MAX_SEQUENCE - delta else delta - (_MAX_SEQUENCE - base) - 1
        sequence = (first.producer_id, first.producer_epoch, base, last)
    result: Columns | None = None
    for batch in batches:
        if batch.size > max_message_bytes:
            raise _Refused(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"a batch of {batch.size} bytes is larger than max.message.bytes"
                f" ({max_message_bytes})",
            )
        if batch.is_control:
            raise _Refused(ErrorCode.INVALID_RECORD, "control batches are not accepted")
        if batch.is_transactional:
            raise _Refused(ErrorCode.INVALID_TXN_STATE, "transactions are not supported")
        if batch.producer_id >= 0 and sequence is None:
            raise _Refused(ErrorCode.INVALID_RECORD, "a producer id in a batch among others")
        _, timestamps, keys, values, headers = batch.columns
        if not values:
            continue
        all_null = keys.count(None) == len(keys)
        if compacted and (all_null or None in keys):
            position = keys.index(None)
            raise _Refused(ErrorCode.INVALID_RECORD, _NO_KEY, ((position, _NO_KEY),))
        try:
            stored_headers = (
                [encode_headers(h) if h else None for h in headers] if any(headers) else None
            )
        except InvalidArgumentError as error:
            raise _Refused(ErrorCode.INVALID_RECORD, error.message) from None
        columns = Columns(
            partition,
            values,
            None if all_null else keys,
            stored_headers,
            None if batch.timestamp_type == TimestampType.LOG_APPEND_TIME else timestamps,
        )
        result = columns if result is None else _joined(result, columns)
    if result is None:
        return Columns(partition, []), batches, sequence
    return result, batches, sequence


def _messages(batches: list[ColumnBatch], partition: int) -> list[Message]:
    """The records of checked batches as Messages (an idempotent producer's batch is written
    with its producer state, through the writer's Message path)."""
    messages: list[Message] = []
    for batch in batches:
        _, timestamps, keys, values, headers = batch.columns
        append_time = batch.timestamp_type == TimestampType.LOG_APPEND_TIME
        for value, key, header, timestamp in zip(values, keys, headers, timestamps, strict=True):
            stamp = None if append_time or timestamp < 0 else timestamp
            messages.append(Message(value, key, header or None, partition, stamp))
    return messages


def _joined(a: Columns, b: Columns) -> Columns:
    """Two parts of one partition as one (the records of a then those of b)."""
    n, m = len(a.values), len(b.values)

    def column(x: list[Any] | None, y: list[Any] | None, fill: Any) -> list[Any] | None:
        if x is None and y is None:
            return None
        return (x if x is not None else [fill] * n) + (y if y is not None else [fill] * m)

    return Columns(
        a.partition,
        a.values + b.values,
        column(a.keys, b.keys, None),
        column(a.headers, b.headers, None),
        column(a.timestamps, b.timestamps, -1),
    )


def produce_response(outcome: ProduceOutcome) -> Any:
    """The ProduceResponse for an outcome."""
    cls = response_class(ApiKey.PRODUCE)
    topic_cls = cls.TopicProduceResponse
    partition_cls = topic_cls.PartitionProduceResponse
    error_cls = partition_cls.BatchIndexAndErrorMessage
    return cls(
        responses=[
            topic_cls(
                name=name,
                partition_responses=[
                    partition_cls(
                        index=p.partition,
                        error_code=int(p.error),
                        base_offset=p.base_offset,
                        log_append_time_ms=-1,
                        log_start_offset=p.log_start,
                        record_errors=[
                            error_cls(batch_index=i, batch_index_error_message=m)
                            for i, m in p.record_errors
                        ],
                        error_message=p.message,
                    )
                    for p in parts
                ],
            )
            for name, parts in outcome.topics
        ],
        throttle_time_ms=0,
    )


# -- Fetch -----------------------------------------------------------------------------------


class Ahead(NamedTuple):
    """A range a fetch suggests encoding ahead: the partition's next records from
    ``offset`` (below ``end``), at most ``limit`` bytes of them."""

    meta: TopicMeta
    partition: int
    offset: int
    end: int
    limit: int


def fetch(
    broker: Broker,
    request: Any,
    version: int,
    *,
    cache: BatchCache | None = None,
    ahead: list[Ahead] | None = None,
) -> tuple[Any, int, bool]:
    """A FetchResponse from the partitions' current state.

    Returns (response, bytes of records in it, whether a partition has an error): the server
    decides from these whether to answer now or wait for ``min_bytes``. Every partition gets
    its watermarks; records are added until ``max_bytes`` (the first partition with records
    always gets at least one, as KIP-74 says, so a large record cannot block a consumer).

    With a ``cache``, a partition's records come from an encoded batch there when it holds
    the fetch offset and all its records are still stored (it may start before the offset,
    as Kafka's batches do: clients skip what they did not ask for); batches encoded here are
    put there. ``ahead`` gets the ranges that follow what was answered, for
    :func:`read_ahead`.
    """
    cls = response_class(ApiKey.FETCH)
    topic_cls = cls.FetchableTopicResponse
    partition_cls = topic_cls.PartitionData
    reader = broker.services.reader
    topics_service = broker.services.topics
    budget = request.max_bytes if version >= 3 else 0x7FFFFFFF
    total = 0
    any_error = False
    responses = []
    for fetch_topic in request.topics:
        name = fetch_topic.topic
        parts = []
        meta: TopicMeta | None
        try:
            meta, extents = reader.extents(name)
            if any(p.partition not in extents for p in fetch_topic.partitions):
                topics_service.forget(name)  # partitions added meanwhile
                meta, extents = reader.extents(name)
        except (TopicNotFoundError, InvalidArgumentError):
            meta = None
            extents = {}
        for fetch_partition in fetch_topic.partitions:
            index = fetch_partition.partition
            offset = fetch_partition.fetch_offset
            extent = extents.get(index)
            if meta is None or extent is None:
                any_error = True
                parts.append(
                    partition_cls(
                        partition_index=index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        high_watermark=-1,
                        last_stable_offset=-1,
                        log_start_offset=-1,
                        aborted_transactions=None,
                        records=b"",
                    )
                )
                continue
            start, end, _stored = extent
            error = ErrorCode.NONE
            records = b""
            if not start <= offset <= end:
                error = ErrorCode.OFFSET_OUT_OF_RANGE
                any_error = True
            elif offset < end and total < budget:
                limit = max(1, min(budget - total, fetch_partition.partition_max_bytes))
                records, after = _partition_records(
                    reader, cache, meta, index, offset, extent, limit, at_least_one=total == 0
                )
                total += len(records)
                if ahead is not None and cache is not None and records and after < end:
                    ahead.append(Ahead(meta, index, after, end, limit))
            parts.append(
                partition_cls(
                    partition_index=index,
                    error_code=int(error),
                    high_watermark=end,
                    last_stable_offset=end,
                    log_start_offset=start,
                    aborted_transactions=None,
                    records=records,
                )
            )
        responses.append(topic_cls(topic=name, partitions=parts))
    response = cls(throttle_time_ms=0, error_code=0, session_id=0, responses=responses)
    return response, total, any_error


def _partition_records(
    reader: Reader,
    cache: BatchCache | None,
    meta: TopicMeta,
    index: int,
    offset: int,
    extent: tuple[int, int, int],
    limit: int,
    *,
    at_least_one: bool,
) -> tuple[bytes, int]:
    """The encoded records of one partition from ``offset`` (cached batches, else rows
    read now) within ``limit`` bytes, and the offset after them."""
    if cache is not None:
        cache.wait_planned(meta.topic_id, index, offset, _AHEAD_WAIT)
        pieces: list[bytes] = []
        size = 0
        after = offset
        while after < extent[1]:
            hit = cache.find(meta.topic_id, index, after, extent)
            if hit is None or hit.base != after:
                # Not one that starts where the answer must: a fetch from the middle of a
                # batch gets that record onwards, encoded from the rows.
                break
            if size + len(hit.data) > limit and (pieces or not at_least_one):
                break
            pieces.append(hit.data)
            size += len(hit.data)
            after = hit.end
        if pieces:
            return b"".join(pieces), after
    encoded = _encode_range(reader, meta, index, offset, extent[1], limit, at_least_one)
    if encoded is None:
        return b"", offset
    if cache is not None and extent[2] == extent[1] - extent[0]:
        cache.put(meta.topic_id, index, encoded)
    return encoded.data, encoded.end


def _encode_range(
    reader: Reader,
    meta: TopicMeta,
    index: int,
    offset: int,
    end: int,
    limit: int,
    at_least_one: bool,
) -> CachedBatch | None:
    rows = reader.read_rows(meta, index, offset, end, min(_MAX_FETCH_ROWS, max(1, limit // 100)))
    rows = cut_to_bytes(rows, limit, at_least_one=at_least_one)
    if not rows:
        return None
    return CachedBatch(rows[0][0], rows[-1][0] + 1, encode_rows(rows, decode_headers))


def read_ahead(broker: Broker, cache: BatchCache, ranges: Sequence[Ahead]) -> int:
    """Encode the ranges a fetch suggested into the cache (each at most once, skipping what
    is cached already); returns how many batches were added. Run it off the request path:
    while a consumer works through one answer, its next one is made."""
    reader = broker.services.reader
    added = 0
    for meta, index, offset, end, limit in ranges:
        if not cache.plan_ahead(meta.topic_id, index, offset):
            continue
        try:
            encoded = _encode_range(reader, meta, index, offset, end, limit, True)
            if encoded is not None:
                cache.put(meta.topic_id, index, encoded)
                added += 1
        except PubsubError:
            pass  # the topic is gone, or the file busy: the next fetch will tell
        finally:
            cache.unplan(meta.topic_id, index, offset)
    return added


# -- ListOffsets -----------------------------------------------------------------------------


def list_offsets(broker: Broker, request: Any, version: int) -> Any:
    """A ListOffsetsResponse: earliest (-2), latest (-1), max timestamp (-3) or the first
    offset at or after a timestamp (through the time index, O(log n)) per partition."""
    cls = response_class(ApiKey.LIST_OFFSETS)
    topic_cls = cls.ListOffsetsTopicResponse
    partition_cls = topic_cls.ListOffsetsPartitionResponse
    topics = []
    for topic in request.topics:
        name = topic.name
        try:
            marks = broker.watermarks(name)
        except (TopicNotFoundError, InvalidArgumentError):
            marks = {}
        max_timestamps: dict[int, int | None] | None = None
        parts = []
        for asked in topic.partitions:
            index = asked.partition_index
            found = marks.get(index)
            if found is None:
                parts.append(
                    partition_cls(
                        partition_index=index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        timestamp=-1,
                        offset=-1,
                        leader_epoch=-1,
                    )
                )
                continue
            start, end = found
            timestamp = asked.timestamp
            offset, at = -1, -1
            if timestamp == LATEST:
                offset = end
            elif timestamp == EARLIEST:
                offset = start
            elif timestamp == MAX_TIMESTAMP:
                if max_timestamps is None:
                    info = broker.describe_topic(name)
                    max_timestamps = {p.partition: p.max_timestamp for p in info.partition_info}
                highest = max_timestamps.get(index)
                if highest is not None and start < end:
                    found_offset = broker.offset_for_time(name, index, highest)
                    if found_offset is not None:
                        offset, at = found_offset, highest
            elif timestamp >= 0:
                found_offset = broker.offset_for_time(name, index, timestamp)
                if found_offset is not None:
                    offset = found_offset
                    [record] = broker.fetch(name, index, found_offset, max_records=1)
                    at = record.timestamp
            else:
                parts.append(
                    partition_cls(
                        partition_index=index,
                        error_code=ErrorCode.INVALID_REQUEST
                        if version >= 1
                        else ErrorCode.UNKNOWN_SERVER_ERROR,
                        timestamp=-1,
                        offset=-1,
                        leader_epoch=-1,
                    )
                )
                continue
            parts.append(
                partition_cls(
                    partition_index=index,
                    error_code=0,
                    timestamp=at,
                    offset=offset,
                    leader_epoch=0,
                )
            )
        topics.append(topic_cls(name=name, partitions=parts))
    return cls(throttle_time_ms=0, topics=topics)
