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
    CorruptBatch,
    Record,
    TimestampType,
    decode_batches,
    encode_batch,
    response_class,
)
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.reader import cut_to_bytes
from pubsub.records import Message, decode_headers
from pubsub.serve.topic_ids import topic_uuid
from pubsub.writer import SequencedBatch

__all__ = [
    "NODE_ID",
    "Advertised",
    "ProduceOutcome",
    "cluster_id_for",
    "fetch",
    "list_offsets",
    "metadata",
    "produce",
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


class ProduceOutcome(NamedTuple):
    """What a Produce did, per topic, and whether anything was written."""

    topics: list[tuple[str, list[PartitionOutcome]]]
    written: int

    @property
    def failed(self) -> bool:
        """True when some partition got an error."""
        return any(p.error for _, parts in self.topics for p in parts)


def produce(broker: Broker, request: Any) -> ProduceOutcome:
    """Append the record batches of a ProduceRequest: each topic in one transaction, each
    partition checked on its own (a refused partition does not stop the others)."""
    outcomes: list[tuple[str, list[PartitionOutcome]]] = []
    written = 0
    for topic_data in request.topic_data:
        name = topic_data.name
        parts, count = _produce_topic(broker, name, topic_data.partition_data)
        outcomes.append((name, parts))
        written += count
    return ProduceOutcome(outcomes, written)


def _produce_topic(
    broker: Broker, name: str, partition_data: Sequence[Any]
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
    pending: dict[int, list[Message]] = {}
    sequenced: dict[int, SequencedBatch] = {}
    for data in partition_data:
        index = data.index
        if not 0 <= index < meta.partitions:
            done[index] = PartitionOutcome(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            continue
        try:
            messages, sequence = _messages(
                data.records, index, meta.max_message_bytes, meta.compacted
            )
        except _Refused as refused:
            done[index] = refused.outcome(index)
            continue
        if sequence is not None:
            if index in sequenced or index in pending:
                done[index] = PartitionOutcome(
                    index, ErrorCode.INVALID_RECORD, message="one record batch per partition"
                )
                sequenced.pop(index, None)
                pending.pop(index, None)
                continue
            sequenced[index] = SequencedBatch(messages, *sequence)
            continue
        if index in sequenced:
            done[index] = PartitionOutcome(
                index, ErrorCode.INVALID_RECORD, message="one record batch per partition"
            )
            sequenced.pop(index)
            continue
        pending.setdefault(index, []).extend(messages)
    written = 0
    if sequenced:
        written += _produce_sequenced(broker, name, sequenced, done)
    if pending:
        everything = [m for messages in pending.values() for m in messages]
        try:
            result = broker.produce_batch(name, everything)
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
            written = len(everything)
        else:
            for index, messages in pending.items():
                done[index] = _produce_partition(broker, name, index, messages)
                if not done[index].error:
                    written += len(messages)
    order = [data.index for data in partition_data]
    return [done[index] for index in dict.fromkeys(order)], written


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


def _produce_partition(
    broker: Broker, name: str, index: int, messages: list[Message]
) -> PartitionOutcome:
    try:
        result = broker.produce_batch(name, messages)
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


def _messages(
    records: bytes | None, partition: int, max_message_bytes: int, compacted: bool
) -> tuple[list[Message], tuple[int, int, int, int] | None]:
    """The records of one partition's batches as Messages, after Kafka's checks, and for an
    idempotent producer's batch (there must then be only one) its producer id, epoch, and
    first and last sequence numbers."""
    if not records:
        raise _Refused(ErrorCode.CORRUPT_MESSAGE, "no record batch")
    try:
        batches = decode_batches(records)
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
    messages: list[Message] = []
    append = messages.append
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
        append_time = batch.timestamp_type == TimestampType.LOG_APPEND_TIME
        for position, record in enumerate(batch.records):
            key = record.key
            if compacted and key is None:
                raise _Refused(
                    ErrorCode.INVALID_RECORD,
                    "Compacted topic cannot accept message without key.",
                    ((position, "Compacted topic cannot accept message without key."),),
                )
            timestamp = record.timestamp
            append(
                Message(
                    record.value,
                    key,
                    record.headers or None,
                    partition,
                    None if append_time or timestamp < 0 else timestamp,
                )
            )
    return messages, sequence


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
                        log_start_offset=-1,
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


def fetch(broker: Broker, request: Any, version: int) -> tuple[Any, int, bool]:
    """A FetchResponse from the partitions' current state.

    Returns (response, bytes of records in it, whether a partition has an error): the server
    decides from these whether to answer now or wait for ``min_bytes``. Every partition gets
    its watermarks; records are added until ``max_bytes`` (the first partition with records
    always gets at least one, as KIP-74 says, so a large record cannot block a consumer).
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
        try:
            meta = topics_service.meta(name)
            marks = reader.watermarks(name)
            if any(p.partition not in marks for p in fetch_topic.partitions):
                topics_service.forget(name)  # partitions added meanwhile
                meta = topics_service.meta(name)
                marks = reader.watermarks(name)
        except (TopicNotFoundError, InvalidArgumentError):
            meta = None
            marks = {}
        for fetch_partition in fetch_topic.partitions:
            index = fetch_partition.partition
            offset = fetch_partition.fetch_offset
            found = marks.get(index)
            if meta is None or found is None:
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
            start, end = found
            error = ErrorCode.NONE
            records = b""
            if not start <= offset <= end:
                error = ErrorCode.OFFSET_OUT_OF_RANGE
                any_error = True
            elif offset < end and total < budget:
                limit = max(1, min(budget - total, fetch_partition.partition_max_bytes))
                rows = reader.read_rows(
                    meta, index, offset, end, min(_MAX_FETCH_ROWS, max(1, limit // 100))
                )
                rows = cut_to_bytes(rows, limit, at_least_one=total == 0)
                if rows:
                    base = rows[0][0]
                    records = encode_batch(
                        base,
                        [
                            Record(
                                row[0] - base,
                                row[1],
                                row[2],
                                row[3],
                                () if row[4] is None else decode_headers(row[4]),
                            )
                            for row in rows
                        ],
                    )
                    total += len(records)
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
