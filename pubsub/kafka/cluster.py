"""A Kafka cluster as a pubsub backend: :class:`KafkaCluster` and :class:`KafkaConsumer`.

They implement :class:`~pubsub.backend.LogClient` and :class:`~pubsub.backend.LogConsumer` on
confluent-kafka (librdkafka), which only this module imports, and return the same types with
the same meanings as the file backend (:class:`~pubsub.broker.Broker`,
:class:`~pubsub.consumer.Consumer`). The differences a cluster imposes are listed in
``docs/kafka.md``; the main ones: a batch is not atomic, a topic's byte size and creation time
are unknown to the admin API, and Kafka itself refuses offset changes for a group with live
members, even when forced.

Producing uses ``acks=all``, ``enable.idempotence=true`` and ``partitioner=murmur2_random``,
so a keyed record lands on the partition :func:`pubsub.partitioner.partition_for_key` (and
Java's producer) chooses. Every call is bounded by the cluster's ``timeout``: a cluster that
does not answer raises :class:`~pubsub.errors.UnavailableError` naming the address (never a
secret). librdkafka's own log goes to the ``pubsub.kafka.librdkafka`` logger (which has a
NullHandler, so nothing reaches stderr unless the application configures logging), and its
connection errors reach ``on_log`` once per change of state.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import functools
import logging
import operator
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from confluent_kafka import Consumer as _RawConsumer
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import Message as _RawMessage
from confluent_kafka import TopicPartition as _KTP

# The admin module re-exports these without listing them in __all__.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from pubsub import config as topic_config
from pubsub.errors import (
    AuthenticationError,
    FencedError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidArgumentError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    PubsubError,
    TopicExistsError,
    TopicNotFoundError,
    UnavailableError,
)
from pubsub.kafka.url import client_config, describe_target, scrub
from pubsub.limits import DEFAULT_MAX_POLL_BYTES
from pubsub.models import (
    STRATEGIES,
    GroupInfo,
    MemberInfo,
    OffsetChange,
    OffsetReset,
    PartitionLag,
    PartitionReport,
    Strategy,
)
from pubsub.records import (
    HeadersInput,
    Message,
    PartitionInfo,
    ProduceResult,
    Record,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
)

if TYPE_CHECKING:
    from pubsub.backend import LogClient, LogConsumer
    from pubsub.models import Stats

__all__ = ["DEFAULT_TIMEOUT", "LOGGER_NAME", "KafkaCluster", "KafkaConsumer"]

DEFAULT_TIMEOUT = 5.0
LOGGER_NAME = "pubsub.kafka.librdkafka"
_logger = logging.getLogger(LOGGER_NAME)
# Without a handler anywhere, Python's last-resort handler would print librdkafka's warnings
# on stderr; an application that configures logging still receives them (propagation).
_logger.addHandler(logging.NullHandler())

PartitionLike = TopicPartition | tuple[str, int]
#: A record to send: value, key, headers, partition (None: the partitioner's choice), timestamp.
_Item = tuple[
    bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int | None, int | None
]

#: The types of value librdkafka takes as they are (str is encoded as UTF-8, as pubsub does).
_PLAIN = frozenset({bytes, str, type(None)})
#: Records handed to librdkafka between two services of its delivery reports.
_POLL_EVERY = 10_000

# The accessors of a fetched message, called in C loops (map) over a whole batch.
_error_of = _RawMessage.error
_topic_of = _RawMessage.topic
_partition_of = _RawMessage.partition
_offset_of = _RawMessage.offset
_key_of = _RawMessage.key
_value_of = _RawMessage.value
_headers_of = _RawMessage.headers
_timestamp_of = _RawMessage.timestamp
_second = operator.itemgetter(1)
_new_record = tuple.__new__

#: pubsub's topic configuration keys that Kafka has with the same name and meaning.
KAFKA_TOPIC_KEYS = (
    "cleanup.policy",
    "delete.retention.ms",
    "max.message.bytes",
    "retention.bytes",
    "retention.ms",
)
#: pubsub's keys with no Kafka equivalent, and what to use instead.
_NO_KAFKA_EQUIVALENT = {
    "retention.messages": "Kafka has no record-count limit: use retention.bytes or retention.ms",
    "retention.consumed": (
        "Kafka never deletes records because groups have read them: use retention.ms"
    ),
    "dedup.window.ms": (
        "Kafka has no record ids: its idempotent producer de-duplicates a producer's own"
        " retries only"
    ),
    "retention.hold.mirrors": (
        "a cluster's retention does not know pubsub's mirrors: give them enough retention.ms"
    ),
}


def _code(name: str) -> int:
    value = getattr(KafkaError, name, None)
    return int(value) if value is not None else -(10**9)


_UNREACHABLE = frozenset(
    _code(n)
    for n in (
        "_TIMED_OUT",
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_MSG_TIMED_OUT",
        "_RESOLVE",
        "_WAIT_COORD",
        "_TIMED_OUT_QUEUE",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "BROKER_NOT_AVAILABLE",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
    )
)
_AUTHENTICATION = frozenset(
    _code(n) for n in ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL")
)
_AUTHORIZATION = frozenset(
    _code(n)
    for n in (
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    )
)
_FENCED = frozenset(
    _code(n)
    for n in (
        "UNKNOWN_MEMBER_ID",
        "ILLEGAL_GENERATION",
        "REBALANCE_IN_PROGRESS",
        "FENCED_INSTANCE_ID",
    )
)
_UNKNOWN_TOPIC = frozenset(_code(n) for n in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"))
_BAD_RECORD = frozenset(
    _code(n)
    for n in (
        "MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "_UNKNOWN_PARTITION",
        "CORRUPT_MESSAGE",
        "INVALID_TIMESTAMP",
        "_MSG_SIZE_TOO_LARGE",
    )
)
#: Answers that mean "ask again shortly": a leader or coordinator is being chosen or moved.
_TRANSIENT = frozenset(
    _code(n)
    for n in (
        "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "UNKNOWN_LEADER_EPOCH",
        "FENCED_LEADER_EPOCH",
        "NOT_CONTROLLER",
    )
)
_EOF = _code("_PARTITION_EOF")
_NO_OFFSET = _code("_NO_OFFSET")
_GROUP_NOT_FOUND = _code("GROUP_ID_NOT_FOUND")
_GROUP_NOT_EMPTY = frozenset(_code(n) for n in ("NON_EMPTY_GROUP", "GROUP_SUBSCRIBED_TO_TOPIC"))


_SPEC_EARLIEST: Any = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_SPEC_LATEST: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_SPEC_NEWEST: Any = OffsetSpec.max_timestamp()  # type: ignore[no-untyped-call]


def _spec_at(timestamp: int) -> Any:
    return OffsetSpec.for_timestamp(timestamp)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Transient(Exception):
    """An admin answer worth asking again for (see ``_TRANSIENT``)."""


class _Link:
    """What the clients of one cluster share: configuration, deadlines, log routing, and the
    connection state last reported (so ``on_log`` hears each change once, not every retry)."""

    def __init__(
        self,
        config: dict[str, str],
        shown: str,
        timeout: float,
        on_log: Callable[[str], None] | None,
    ) -> None:
        self.config = config
        self.shown = shown
        self.timeout = timeout
        self.on_log = on_log
        self.state = "unknown"
        self.last_error: str | None = None
        self.auth_error: str | None = None

    def settings(self, extra: Mapping[str, object]) -> dict[str, Any]:
        """A client's configuration: ours, then the user's properties (they win), then the
        routing of librdkafka's log and errors (always ours)."""
        merged: dict[str, Any] = dict(extra)
        merged.update(self.config)
        merged["logger"] = _logger
        merged["error_cb"] = self.error_cb
        return merged

    def error_cb(self, error: KafkaError) -> None:
        """librdkafka's error callback: remember the last error, report state changes."""
        code = error.code()
        text = scrub(error.str(), self.config)
        if code in _AUTHENTICATION:
            self.auth_error = text
            state = "authentication failed"
        elif code in _UNREACHABLE:
            state = "unreachable"
        else:
            state = f"error {error.name()}"
        self.last_error = text
        if state != self.state:
            self.state = state
            self.report(f"kafka {self.shown}: {text}")

    def connected(self) -> None:
        """A request succeeded: report the recovery if the last state was an error."""
        if self.state not in ("unknown", "connected"):
            self.report(f"kafka {self.shown}: connected again")
        self.state = "connected"
        self.auth_error = None

    def report(self, line: str) -> None:
        _logger.info("%s", line)
        if self.on_log is not None:
            self.on_log(line)

    def unavailable(self, what: str) -> UnavailableError:
        """The error for a request that got no answer in time (or failed authentication)."""
        if self.auth_error is not None:
            return AuthenticationError(
                f"authentication to the Kafka cluster at {self.shown} failed: {self.auth_error}"
            )
        detail = f" (last error: {self.last_error})" if self.last_error else ""
        return UnavailableError(
            f"the Kafka cluster at {self.shown} did not answer {what} within "
            f"{self.timeout:g} s{detail}"
        )

    def error(
        self,
        error: KafkaError,
        what: str,
        *,
        topic: str | None = None,
        group: str | None = None,
        index: int | None = None,
    ) -> PubsubError:
        """A pubsub error for a Kafka error (secrets scrubbed from librdkafka's text)."""
        code = error.code()
        text = scrub(error.str(), self.config)
        if code in _UNKNOWN_TOPIC and topic is not None:
            return TopicNotFoundError(topic)
        if code == _code("TOPIC_ALREADY_EXISTS") and topic is not None:
            return TopicExistsError(topic)
        if code == _GROUP_NOT_FOUND and group is not None:
            return _group_not_found(group)
        if code in _GROUP_NOT_EMPTY:
            return GroupNotEmptyError(
                f"group {group!r} has live members; {what} refused by Kafka",
                hint="stop its consumers first (or wait for their session timeout)",
            )
        if code in _FENCED:
            return FencedError(f"{what}: {text}")
        if code in _AUTHENTICATION:
            return AuthenticationError(
                f"authentication to the Kafka cluster at {self.shown} failed: {text}"
            )
        if code in _AUTHORIZATION:
            return AuthenticationError(
                f"the Kafka cluster at {self.shown} refused {what}: {text}",
                hint="the credentials are valid but lack the permission (ACL) for this",
            )
        if code in _UNREACHABLE:
            self.last_error = text
            return self.unavailable(what)
        if code in _BAD_RECORD:
            return InvalidRecordError(text, index=index or 0)
        if code in (
            _code("INVALID_PARTITIONS"),
            _code("INVALID_REPLICATION_FACTOR"),
            _code("INVALID_CONFIG"),
            _code("POLICY_VIOLATION"),
            _code("INVALID_TOPIC_EXCEPTION"),
            _code("INVALID_REQUEST"),
            _code("_INVALID_ARG"),
            _code("OFFSET_OUT_OF_RANGE"),
            _code("UNSUPPORTED_VERSION"),
            _code("INVALID_COMMIT_OFFSET_SIZE"),
        ):
            return InvalidArgumentError(f"{what}: {text}")
        return PubsubError(f"{what}: Kafka error {error.name()}: {text}")


def _group_not_found(group: str) -> GroupNotFoundError:
    return GroupNotFoundError(
        f"group {group!r} does not exist", hint="list groups with 'pubsub group list'"
    )


def _as_bytes(value: object, what: str, index: int) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidRecordError(
        f"{what} must be bytes, str or None, got {type(value).__name__}", index=index
    )


def _kafka_headers(headers: HeadersInput | None) -> list[tuple[str, bytes | None]] | None:
    """Headers as librdkafka takes them: (name, bytes | None) pairs, order and duplicates kept.

    Validated as the file backend validates them (by :func:`pubsub.records.encode_headers`).
    """
    if not headers:
        return None
    from pubsub.records import decode_headers, encode_headers

    encoded = encode_headers(headers)
    return list(decode_headers(encoded)) or None


def _check_partition(partition: object, count: int, index: int) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < count:
        raise InvalidRecordError(
            f"partition {partition} does not exist",
            index=index,
            hint=f"the topic has partitions 0 to {count - 1}",
        )
    return partition


def _check_timestamp(timestamp: object, index: int) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidRecordError(
            f"invalid timestamp {timestamp!r}",
            index=index,
            hint="a timestamp is milliseconds since the Unix epoch, 0 or more",
        )
    return timestamp


def _encode_headers(headers: HeadersInput) -> str | None:
    from pubsub.records import encode_headers

    return encode_headers(headers)


def _to_record(message: _RawMessage) -> Record:
    headers = message.headers()
    raw_headers = None
    if headers:
        from pubsub.records import encode_headers

        raw_headers = encode_headers(headers)
    # Built as the file backend builds records from rows: the tuple directly.
    return tuple.__new__(
        Record,
        (
            message.topic(),
            message.partition(),
            message.offset(),
            message.timestamp()[1],
            message.key(),
            message.value(),
            raw_headers,
        ),
    )


class _ReportedResult(ProduceResult):
    """A :class:`ProduceResult` whose offsets in a partition are not consecutive: another
    producer wrote to the same partition in between (on Kafka a batch is not one append)."""

    __slots__ = ("_list_offsets", "_list_partitions", "_list_timestamps")

    def __init__(
        self, topic: str, partitions: list[int], offsets: list[int], timestamps: list[int]
    ) -> None:
        bases: dict[int, tuple[int, int]] = {}
        for partition, offset in zip(partitions, offsets, strict=True):
            first, count = bases.get(partition, (offset, 0))
            bases[partition] = (min(first, offset), count + 1)
        super().__init__(topic, bases, timestamps, partitions, [0] * len(partitions))
        self._list_partitions = partitions
        self._list_offsets = offsets
        self._list_timestamps = timestamps

    def __len__(self) -> int:
        return len(self._list_offsets)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return RecordMetadata(
            self.topic,
            self._list_partitions[index],
            self._list_offsets[index],
            self._list_timestamps[index],
        )


def _result(
    topic: str, partitions: list[int], offsets: list[int], timestamps: list[int]
) -> ProduceResult:
    """The compact ProduceResult when each partition's offsets follow each other in input
    order (the usual case), else one that lists them."""
    bases: dict[int, tuple[int, int]] = {}
    ranks: list[int] = []
    for partition, offset in zip(partitions, offsets, strict=True):
        found = bases.get(partition)
        if found is None:
            bases[partition] = (offset, 1)
            ranks.append(0)
        else:
            base, count = found
            if offset != base + count:
                return _ReportedResult(topic, partitions, offsets, timestamps)
            bases[partition] = (base, count + 1)
            ranks.append(count)
    if not bases:
        return ProduceResult(topic, {}, 0, [], [])
    if len(bases) == 1:
        return ProduceResult(topic, bases, timestamps)
    return ProduceResult(topic, bases, timestamps, partitions, ranks)


class KafkaCluster:
    """A Kafka cluster behind the :class:`~pubsub.backend.LogClient` Protocol.

    ``url`` is ``kafka://HOST:PORT[,HOST:PORT…][?property=value&…]``; ``config_file`` a
    librdkafka properties file in kcat's ``-F`` format (the URL's properties win). Every
    request waits at most ``timeout`` seconds, then raises
    :class:`~pubsub.errors.UnavailableError` (exit 7). ``on_log`` receives one line per change
    of the connection's state (unreachable, authentication failed, connected again).
    ``clock`` returns ms since the epoch: records produced without a timestamp get its time.

    A malformed ``url`` raises :class:`~pubsub.errors.InvalidArgumentError` before anything
    connects. Nothing connects until the first request.
    """

    def __init__(
        self,
        url: str,
        *,
        config_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_log: Callable[[str], None] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidArgumentError(
                f"invalid Kafka timeout {timeout!r}", hint="use a number of seconds above 0"
            )
        config = client_config(url, config_file=config_file)
        self.url = url
        #: The target for display: no secret in it.
        self.target = describe_target(url)
        self.timeout = float(timeout)
        self._link = _Link(config, self.target, self.timeout, on_log)
        self._clock = clock
        self._admin_client: AdminClient | None = None
        self._producer_client: Producer | None = None
        self._fetcher: _RawConsumer | None = None
        self._partitions: dict[str, int] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Deliver what is still queued (bounded by the timeout) and drop the clients."""
        if self._closed:
            return
        self._closed = True
        if self._producer_client is not None:
            self._producer_client.flush(self.timeout)
            self._producer_client = None
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None
        self._admin_client = None

    def now(self) -> int:
        """The client's clock: ms since the epoch."""
        return self._clock() if self._clock is not None else _now_ms()

    @property
    def low_on_space(self) -> bool:
        """Always False: the cluster manages its own disks."""
        return False

    @property
    def _admin(self) -> AdminClient:
        if self._closed:
            raise InvalidArgumentError("the Kafka client is closed")
        if self._admin_client is None:
            self._admin_client = AdminClient(self._link.settings({}))
        return self._admin_client

    @property
    def _producer(self) -> Producer:
        if self._closed:
            raise InvalidArgumentError("the Kafka client is closed")
        if self._producer_client is None:
            self._producer_client = Producer(
                self._link.settings(
                    {
                        "acks": "all",
                        "enable.idempotence": True,
                        "partitioner": "murmur2_random",
                        "message.timeout.ms": max(1, int(self.timeout * 1000)),
                        "linger.ms": 5,
                    }
                )
            )
        return self._producer_client

    def _wait(
        self,
        future: concurrent.futures.Future[Any],
        what: str,
        *,
        retry: bool = False,
        **names: Any,
    ) -> Any:
        """The result of an admin request, within the timeout; errors mapped to pubsub's."""
        try:
            value = future.result(timeout=self.timeout + 1.0)
        except concurrent.futures.TimeoutError:
            raise self._link.unavailable(what) from None
        except KafkaException as e:
            error = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if error is None:
                raise PubsubError(f"{what}: {scrub(str(e), self._link.config)}") from None
            if retry and error.code() in _TRANSIENT:
                self._link.last_error = scrub(error.str(), self._link.config)
                raise _Transient from None
            raise self._link.error(error, what, **names) from None
        finally:
            if self._admin_client is not None:
                self._admin_client.poll(0)  # serve the log and error callbacks
        self._link.connected()
        return value

    def _metadata(self, topic: str | None = None) -> Any:
        what = "a metadata request"
        try:
            metadata = self._admin.list_topics(topic=topic, timeout=self.timeout)
        except KafkaException as e:
            error = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if error is not None and error.code() not in _UNREACHABLE:
                raise self._link.error(error, what, topic=topic) from None
            if error is not None:
                self._link.last_error = scrub(error.str(), self._link.config)
            raise self._link.unavailable(what) from None
        finally:
            self._admin.poll(0)
        self._link.connected()
        return metadata

    def _partition_count(self, topic: str, *, refresh: bool = False) -> int:
        if not refresh:
            count = self._partitions.get(topic)
            if count is not None:
                return count
        metadata = self._metadata(topic)
        info = metadata.topics.get(topic)
        if info is None or (info.error is not None and info.error.code() in _UNKNOWN_TOPIC):
            self._partitions.pop(topic, None)
            raise TopicNotFoundError(topic)
        if info.error is not None:
            raise self._link.error(info.error, f"metadata of topic {topic!r}", topic=topic)
        count = len(info.partitions)
        self._partitions[topic] = count
        return count

    def _check_partition(self, topic: str, partition: int) -> int:
        count = self._partition_count(topic)
        valid = not isinstance(partition, bool) and isinstance(partition, int)
        if valid and not 0 <= partition < count:
            count = self._partition_count(topic, refresh=True)
        if not valid or not 0 <= partition < count:
            raise InvalidArgumentError(
                f"topic {topic!r} has no partition {partition}",
                hint=f"partitions are 0 to {count - 1}",
            )
        return count

    def _list_offsets(
        self,
        specs: Mapping[TopicPartition, Any],
        what: str,
        *,
        committed_only: bool = False,
    ) -> dict[TopicPartition, tuple[int, int]]:
        """``{partition: (offset, timestamp)}`` for each spec, in one request."""
        if not specs:
            return {}
        request = {_KTP(tp.topic, tp.partition): spec for tp, spec in specs.items()}
        isolation = (
            IsolationLevel.READ_COMMITTED if committed_only else IsolationLevel.READ_UNCOMMITTED
        )
        results = self._retrying(
            lambda: self._admin.list_offsets(
                request, isolation_level=isolation, request_timeout=self.timeout
            ),
            what,
            topic=next(iter(specs)).topic,
        )
        return {
            TopicPartition(ktp.topic, ktp.partition): (info.offset, info.timestamp)
            for ktp, info in results.items()
        }

    def _retrying(
        self,
        issue: Callable[[], Mapping[Any, concurrent.futures.Future[Any]]],
        what: str,
        **names: Any,
    ) -> dict[Any, Any]:
        """Issue a request and wait for each of its answers, issuing it again (within the
        timeout) while the cluster answers that it is moving a leader or a coordinator, as it
        does right after a topic is created."""
        deadline = time.monotonic() + self.timeout
        while True:
            futures = issue()
            try:
                return {key: self._wait(f, what, retry=True, **names) for key, f in futures.items()}
            except _Transient:
                if time.monotonic() >= deadline:
                    raise self._link.unavailable(what) from None
                time.sleep(0.05)

    def _marks(
        self, topics: Iterable[str], *, committed_only: bool = False
    ) -> dict[str, dict[int, tuple[int, int]]]:
        """Watermarks of several topics in two requests."""
        parts = [
            TopicPartition(topic, p)
            for topic in dict.fromkeys(topics)
            for p in range(self._partition_count(topic))
        ]
        starts = self._list_offsets({tp: _SPEC_EARLIEST for tp in parts}, "a log start request")
        ends = self._list_offsets(
            {tp: _SPEC_LATEST for tp in parts},
            "a log end request",
            committed_only=committed_only,
        )
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in parts:
            marks.setdefault(tp.topic, {})[tp.partition] = (starts[tp][0], ends[tp][0])
        return marks

    # -- topics ----------------------------------------------------------------------------

    def _topic_config(self, config: Mapping[str, object]) -> dict[str, str]:
        """pubsub's topic configuration as Kafka's: the same keys, values normalised (``7d``
        → ms); keys pubsub does not know are passed to Kafka as they are."""
        known = {k: v for k, v in config.items() if k in topic_config.TOPIC_CONFIGS}
        for key in known:
            if key in _NO_KAFKA_EQUIVALENT:
                raise InvalidArgumentError(
                    f"topic config {key!r} has no Kafka equivalent",
                    hint=_NO_KAFKA_EQUIVALENT[key],
                )
        result = topic_config.normalise_config(known)
        for key, value in config.items():
            if key not in known:
                result[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return result

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, object] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> TopicInfo:
        """Create a topic (replication factor: the cluster's default). Raises
        :class:`~pubsub.errors.TopicExistsError` unless ``if_not_exists``."""
        topic_config.validate_name(name)
        topic_config.validate_partitions(partitions)
        configs = self._topic_config(config or {})
        futures = self._admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=-1, config=configs)],
            request_timeout=self.timeout,
            operation_timeout=self.timeout,
        )
        try:
            self._wait(futures[name], f"creating topic {name!r}", topic=name)
        except TopicExistsError:
            if not if_not_exists:
                raise
        self._partitions.pop(name, None)
        return self._describe_when_visible(name)

    def _describe_when_visible(self, name: str) -> TopicInfo:
        """describe_topic, waiting (bounded) until the new topic's metadata has spread."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self.describe_topic(name)
            except TopicNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _configs(self, names: Sequence[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        """Per topic: (the effective values of pubsub's keys, every key set on the topic)."""
        if not names:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        results = self._retrying(
            lambda: self._admin.describe_configs(resources, request_timeout=self.timeout),
            "a topic configuration request",
            topic=names[0],
        )
        answer: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        for resource, entries in results.items():
            effective: dict[str, str] = {}
            overrides: dict[str, str] = {}
            for key, entry in entries.items():
                value = "" if entry.value is None else str(entry.value)
                if key in KAFKA_TOPIC_KEYS:
                    effective[key] = value
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
                    overrides[key] = value
                    effective[key] = value
            answer[resource.name] = (dict(sorted(effective.items())), overrides)
        return answer

    def _topic_infos(self, names: Sequence[str]) -> list[TopicInfo]:
        counts = {name: self._partition_count(name) for name in names}
        parts = [TopicPartition(n, p) for n in names for p in range(counts[n])]
        marks = self._marks(names)
        newest = self._list_offsets({tp: _SPEC_NEWEST for tp in parts}, "a timestamp request")
        configs = self._configs(names)
        infos = []
        for name in names:
            partition_info = []
            for p in range(counts[name]):
                start, end = marks[name][p]
                ts = newest.get(TopicPartition(name, p), (-1, -1))[1]
                partition_info.append(
                    PartitionInfo(
                        partition=p,
                        log_start_offset=start,
                        next_offset=end,
                        records=end - start,
                        bytes=0,
                        max_timestamp=None if ts is None or ts < 0 else ts,
                    )
                )
            effective, overrides = configs.get(name, ({}, {}))
            infos.append(
                TopicInfo(
                    name=name,
                    partitions=counts[name],
                    config=effective,
                    overrides=overrides,
                    created_ms=0,
                    partition_info=tuple(partition_info),
                )
            )
        return infos

    def list_topics(self) -> list[TopicInfo]:
        """Every topic but Kafka's internal ones (``__…``), sorted by name.

        ``records`` is ``log end - log start`` (compaction and transaction markers make it an
        upper bound); ``bytes`` and ``created_ms`` are 0: Kafka's admin API does not say.
        """
        metadata = self._metadata()
        names = sorted(
            name
            for name, info in metadata.topics.items()
            if not name.startswith("__") and info.error is None
        )
        for name in names:
            self._partitions[name] = len(metadata.topics[name].partitions)
        return self._topic_infos(names)

    def describe_topic(self, name: str) -> TopicInfo:
        """A topic: partitions with log start and end, configuration and overrides."""
        self._partition_count(name, refresh=True)
        return self._topic_infos([name])[0]

    def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, object] | None = None,
        delete_config: Iterable[str] = (),
    ) -> TopicInfo:
        """Add partitions (never remove) and set or reset configuration (incrementally)."""
        configs = self._topic_config(config or {})
        to_delete = list(delete_config)
        for key in to_delete:
            if key in _NO_KAFKA_EQUIVALENT:
                raise InvalidArgumentError(
                    f"topic config {key!r} has no Kafka equivalent",
                    hint=_NO_KAFKA_EQUIVALENT[key],
                )
        if partitions is not None:
            topic_config.validate_partitions(partitions)
        count = self._partition_count(name, refresh=True)
        if partitions is not None and partitions != count:
            if partitions < count:
                raise InvalidArgumentError(
                    f"topic {name!r} has {count} partitions; the count can only grow",
                    hint="removing partitions would lose records and move keys",
                )
            futures = self._admin.create_partitions(
                [NewPartitions(name, partitions)],
                request_timeout=self.timeout,
                operation_timeout=self.timeout,
            )
            self._wait(futures[name], f"adding partitions to {name!r}", topic=name)
        if configs or to_delete:
            entries = [
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in configs.items()
            ] + [
                ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)
                for key in to_delete
            ]
            resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
            for future in self._admin.incremental_alter_configs(
                [resource], request_timeout=self.timeout
            ).values():
                self._wait(future, f"altering topic {name!r}", topic=name)
        self._partitions.pop(name, None)
        if partitions is not None:
            deadline = time.monotonic() + self.timeout
            while self._partition_count(name, refresh=True) < partitions:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        return self.describe_topic(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic; returns once the cluster's metadata no longer lists it (bounded)."""
        futures = self._admin.delete_topics(
            [name], request_timeout=self.timeout, operation_timeout=self.timeout
        )
        self._wait(futures[name], f"deleting topic {name!r}", topic=name)
        self._partitions.pop(name, None)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            info = self._metadata(name).topics.get(name)
            if info is None or info.error is not None:
                return
            time.sleep(0.05)

    def truncate(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        *,
        before: int | None = None,
        before_time: int | None = None,
    ) -> list[PartitionReport]:
        """Kafka's DeleteRecords: move the log start to ``before`` (all records when neither
        ``before`` nor ``before_time`` is given; the first record at or after ``before_time``).

        A ``before`` beyond a partition's end raises
        :class:`~pubsub.errors.OffsetOutOfRangeError` and deletes nothing. ``deleted_bytes``
        is 0: Kafka does not report it.
        """
        if before is not None and before_time is not None:
            raise InvalidArgumentError("give before or before_time, not both")
        count = self._partition_count(topic, refresh=True)
        chosen = list(range(count)) if partitions is None else sorted(set(partitions))
        for p in chosen:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < count:
                raise InvalidArgumentError(
                    f"topic {topic!r} has no partition {p}",
                    hint=f"partitions are 0 to {count - 1}",
                )
        marks = self._marks([topic])[topic]
        found: dict[TopicPartition, int | None] = {}
        if before_time is not None:
            found = self._offsets_for_time([TopicPartition(topic, p) for p in chosen], before_time)
        targets: dict[int, int] = {}
        for p in chosen:
            start, end = marks[p]
            if before is not None:
                if before > end:
                    raise OffsetOutOfRangeError(
                        f"offset {before} is beyond the end of {topic}[{p}]",
                        offset=before,
                        log_start_offset=start,
                        next_offset=end,
                    )
                target = before
            elif before_time is not None:
                hit = found.get(TopicPartition(topic, p))
                target = end if hit is None else hit
            else:
                target = end
            targets[p] = target
        wanted = {p: t for p, t in targets.items() if t > marks[p][0]}
        if wanted:
            self._retrying(
                lambda: self._admin.delete_records(
                    [_KTP(topic, p, t) for p, t in wanted.items()],
                    request_timeout=self.timeout,
                    operation_timeout=self.timeout,
                ),
                f"truncating {topic}",
                topic=topic,
            )
        reports: list[PartitionReport] = []
        for p in chosen:
            start = marks[p][0]
            new_start = max(start, targets[p])
            reports.append(
                PartitionReport(topic, p, new_start - start, 0, new_start, ("truncate",))
            )
        return reports

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of a topic."""
        return [TopicPartition(topic, p) for p in range(self._partition_count(topic))]

    def defaults(self) -> dict[str, str]:
        """What applies to a topic without its own setting: the broker's ``log.*`` settings
        under the topic keys (retention.ms, retention.bytes, cleanup.policy,
        max.message.bytes, delete.retention.ms), from the first broker's configuration."""
        metadata = self._metadata()
        if not metadata.brokers:
            raise self._link.unavailable("a metadata request")
        broker = min(metadata.brokers)
        resource = ConfigResource(ResourceType.BROKER, str(broker))
        futures = self._admin.describe_configs([resource], request_timeout=self.timeout)
        entries = self._wait(next(iter(futures.values())), "a broker configuration request")
        values = {k: str(e.value) for k, e in entries.items() if e.value is not None}
        result: dict[str, str] = {}
        if "log.retention.ms" in values:
            result["retention.ms"] = values["log.retention.ms"]
        elif "log.retention.minutes" in values:
            result["retention.ms"] = str(int(values["log.retention.minutes"]) * 60_000)
        elif "log.retention.hours" in values:
            result["retention.ms"] = str(int(values["log.retention.hours"]) * 3_600_000)
        for ours, theirs in (
            ("retention.bytes", "log.retention.bytes"),
            ("cleanup.policy", "log.cleanup.policy"),
            ("max.message.bytes", "message.max.bytes"),
            ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
        ):
            if theirs in values:
                result[ours] = values[theirs]
        return dict(sorted(result.items()))

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
        id: str | None = None,
    ) -> RecordMetadata:
        """Produce one record and wait for its delivery report (``acks=all``).

        ``id`` is refused: a Kafka cluster has no per-record de-duplication across producer
        sessions (its idempotent producer only drops the retries one producer makes of its
        own batches, which this client already uses), so a record id could not be honoured.

        Raises :class:`~pubsub.errors.InvalidRecordError` for a record the topic refuses,
        :class:`~pubsub.errors.TopicNotFoundError`, :class:`~pubsub.errors.UnavailableError`
        when it was not acknowledged within the timeout,
        :class:`~pubsub.errors.InvalidArgumentError` for ``id``.
        """
        if id is not None:
            raise InvalidArgumentError(
                "record ids (produce --id) need a pubsub file: a Kafka cluster cannot tell"
                " a record produced again by another process from a new one",
                hint="produce to a file (or through 'pubsub serve'), or de-duplicate in the"
                " consumer by a header carrying the id",
            )
        item = (
            _as_bytes(value, "value", 0),
            _as_bytes(key, "key", 0),
            _kafka_headers(headers),
            partition,
            None if timestamp is None else _check_timestamp(timestamp, 0),
        )
        return self._send(topic, [], [item], None)[0]

    def produce_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
    ) -> ProduceResult:
        """Produce many records, then wait for every delivery report.

        Unlike the file backend this is not atomic: when a record fails, the records before
        it may have been written (the error's ``index`` names the first failed record).
        """
        key_b = _as_bytes(key, "key", 0)
        header_list = _kafka_headers(headers)
        batch = messages if isinstance(messages, list | tuple) else list(messages)
        if set(map(type, batch)) <= _PLAIN:
            # Values only, sharing key, headers and partition: sent as they are (librdkafka
            # takes bytes, str and None; anything else is converted or refused on the way).
            return self._send(topic, batch, None, (key_b, header_list, partition))
        items: list[_Item] = []
        for index, item in enumerate(batch):
            if isinstance(item, Message):
                items.append(
                    (
                        _as_bytes(item.value, "value", index),
                        _as_bytes(item.key, "key", index) if item.key is not None else key_b,
                        _kafka_headers(item.headers) if item.headers else header_list,
                        item.partition if item.partition is not None else partition,
                        None if item.timestamp is None else _check_timestamp(item.timestamp, index),
                    )
                )
            else:
                items.append((_as_bytes(item, "value", index), key_b, header_list, partition, None))
        return self._send(topic, [], items, None)

    def _send(
        self,
        topic: str,
        values: Sequence[object],
        items: list[_Item] | None,
        shared: tuple[bytes | None, list[tuple[str, bytes | None]] | None, int | None] | None,
    ) -> ProduceResult:
        """Send ``items``, or ``values`` with the ``shared`` key, headers and partition; wait
        for every delivery report; the metadata in input order.

        When every record goes to one known partition (a topic of one partition, or the same
        given partition for all), delivery reports arrive in the order of sending
        (idempotence keeps a partition's order), so one callback for the batch collects the
        offsets in input order. Otherwise each record gets its own callback that knows its
        index.
        """
        count = self._partition_count(topic)
        if items is None:
            assert shared is not None
            given = [shared[2]]
            n = len(values)
        else:
            given = [item[3] for item in items]
            n = len(items)
        for index, partition in enumerate(given):
            if partition is not None and not (type(partition) is int and 0 <= partition < count):
                count = self._partition_count(topic, refresh=True)
                _check_partition(partition, count, index if items is not None else 0)
        if n == 0:
            return ProduceResult(topic, {}, 0, [], [])
        targets = set(given)
        if count == 1:
            single: int | None = 0
        elif len(targets) == 1 and None not in targets:
            single = next(iter(targets))
        else:
            single = None
        deadline = time.monotonic() + self.timeout
        if single is not None:
            offsets: list[int] = []
            stamps: list[int] = []
            failed: list[tuple[int, KafkaError]] = []
            add_offset = offsets.append
            add_stamp = stamps.append

            def report(error: KafkaError | None, message: _RawMessage) -> None:
                if error is not None:
                    failed.append((len(offsets), error))
                    add_offset(-1)
                    add_stamp(0)
                else:
                    add_offset(message.offset())  # type: ignore[arg-type]
                    add_stamp(message.timestamp()[1])

            self._produce_all(topic, values, items, shared, single, report, None, deadline)
            self._flush(n)
            if failed:
                index, error = failed[0]
                raise self._link.error(
                    error, f"record {index} was not delivered", topic=topic, index=index
                )
            self._link.connected()
            base = offsets[0]
            if offsets == list(range(base, base + n)):
                return ProduceResult(topic, {single: (base, n)}, stamps)
            return _ReportedResult(topic, [single] * n, offsets, stamps)

        partitions = [0] * n
        offsets = [0] * n
        stamps = [0] * n
        failures: dict[int, KafkaError] = {}

        def tracked(index: int, error: KafkaError | None, message: _RawMessage) -> None:
            if error is not None:
                failures[index] = error
                return
            partitions[index] = message.partition() or 0
            offsets[index] = message.offset() or 0
            stamps[index] = message.timestamp()[1]

        self._produce_all(topic, values, items, shared, None, None, tracked, deadline)
        self._flush(n)
        if failures:
            index = min(failures)
            raise self._link.error(
                failures[index], f"record {index} was not delivered", topic=topic, index=index
            )
        self._link.connected()
        return _result(topic, partitions, offsets, stamps)

    def _produce_all(
        self,
        topic: str,
        values: Sequence[object],
        items: list[_Item] | None,
        shared: tuple[bytes | None, list[tuple[str, bytes | None]] | None, int | None] | None,
        single: int | None,
        report: Callable[[KafkaError | None, _RawMessage], None] | None,
        tracked: Callable[[int, KafkaError | None, _RawMessage], None] | None,
        deadline: float,
    ) -> None:
        """Hand every record to librdkafka: ``report`` for all, or ``tracked`` bound to each
        index. Delivery reports are served every ``_POLL_EVERY`` records, so the local queue
        never fills on a large batch."""
        producer = self._producer
        produce = producer.produce
        poll = producer.poll
        stamp = self._clock
        if items is None:
            assert shared is not None
            key, headers, given = shared
            partition = -1 if given is None else given
            for start in range(0, len(values), _POLL_EVERY):
                chunk = values[start : start + _POLL_EVERY]
                if headers is None and stamp is None and report is not None:
                    # The hot path: nothing but the value differs between records.
                    for index, value in enumerate(chunk, start):
                        try:
                            produce(topic, value, key, partition, report)  # type: ignore[arg-type]
                        except (BufferError, KafkaException, TypeError) as e:
                            self._produce_one(
                                e,
                                topic,
                                index,
                                value,
                                key,
                                headers,
                                partition,
                                None,
                                report,
                                deadline,
                            )
                else:
                    for index, value in enumerate(chunk, start):
                        callback = report or functools.partial(tracked, index)  # type: ignore[arg-type,misc]
                        timestamp = stamp() if stamp is not None else None
                        try:
                            produce(
                                topic,
                                value,  # type: ignore[arg-type]
                                key,
                                partition,
                                callback,
                                timestamp=timestamp or 0,
                                headers=headers,  # type: ignore[arg-type]
                            )
                        except (BufferError, KafkaException, TypeError) as e:
                            self._produce_one(
                                e,
                                topic,
                                index,
                                value,
                                key,
                                headers,
                                partition,
                                timestamp,
                                callback,
                                deadline,
                            )
                poll(0)
            return
        for start in range(0, len(items), _POLL_EVERY):
            for index, (value, key, headers, given, at) in enumerate(
                items[start : start + _POLL_EVERY], start
            ):
                callback = report or functools.partial(tracked, index)  # type: ignore[arg-type,misc]
                partition = -1 if given is None else given
                timestamp = stamp() if at is None and stamp is not None else at
                try:
                    if headers is None and timestamp is None:
                        produce(topic, value, key, partition, callback)
                    else:
                        produce(
                            topic,
                            value,
                            key,
                            partition,
                            callback,
                            timestamp=timestamp or 0,
                            headers=headers,  # type: ignore[arg-type]
                        )
                except (BufferError, KafkaException, TypeError) as e:
                    self._produce_one(
                        e,
                        topic,
                        index,
                        value,
                        key,
                        headers,
                        partition,
                        timestamp,
                        callback,
                        deadline,
                    )
            poll(0)

    def _produce_one(
        self,
        first: Exception,
        topic: str,
        index: int,
        value: object,
        key: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
        partition: int,
        timestamp: int | None,
        callback: Callable[[KafkaError | None, _RawMessage], None],
        deadline: float,
    ) -> None:
        """A record the fast loop could not hand over: a value to convert first (or refuse),
        a full local queue to drain within the deadline, or a record librdkafka refuses."""
        producer = self._producer
        error: Exception = first
        while True:
            if isinstance(error, TypeError):
                converted = _as_bytes(value, "value", index)
                if converted is value:
                    raise error
                value = converted
            elif isinstance(error, BufferError):
                # The local queue is full: let deliveries drain it, within the deadline.
                if time.monotonic() > deadline + self.timeout:
                    raise self._link.unavailable("a produce request") from None
                producer.poll(0.05)
            elif isinstance(error, KafkaException):
                raise self._link.error(
                    error.args[0], "producing", topic=topic, index=index
                ) from None
            try:
                producer.produce(
                    topic,
                    value,  # type: ignore[arg-type]
                    key,
                    partition,
                    callback,
                    timestamp=timestamp or 0,
                    headers=headers,  # type: ignore[arg-type]
                )
                return
            except (BufferError, KafkaException, TypeError) as e:
                error = e

    def _flush(self, n: int) -> None:
        left = self._producer.flush(self.timeout + 1.0)
        if left:
            raise self._link.unavailable(f"the delivery of {left} of {n} records")

    # -- fetch -----------------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 500,
        max_bytes: int | None = None,
    ) -> list[Record]:
        """Records of one partition from ``offset`` on (committed ones: read_committed).

        At most ``max_records``; with ``max_bytes``, stops before the record that would take
        the keys and values past it (at least one record). Raises
        :class:`~pubsub.errors.OffsetOutOfRangeError` outside ``[log start, log end]``.
        """
        if max_records < 1:
            raise InvalidArgumentError("max_records must be at least 1")
        self._check_partition(topic, partition)
        start, end = self._marks([topic], committed_only=True)[topic][partition]
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for {topic}[{partition}]",
                offset=offset,
                log_start_offset=start,
                next_offset=end,
            )
        if offset == end:
            return []
        if self._fetcher is None:
            self._fetcher = _RawConsumer(
                self._link.settings(
                    {
                        "group.id": f"pubsub-fetch-{uuid.uuid4().hex}",
                        "enable.auto.commit": False,
                        "enable.partition.eof": True,
                        "isolation.level": "read_committed",
                    }
                )
            )
        fetcher = self._fetcher
        fetcher.assign([_KTP(topic, partition, offset)])
        records: list[Record] = []
        size = 0
        deadline = time.monotonic() + self.timeout
        try:
            while len(records) < max_records:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if records:
                        break
                    raise self._link.unavailable(f"a fetch from {topic}[{partition}]")
                message = fetcher.poll(min(remaining, 0.5))
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == _EOF:
                        break
                    raise self._link.error(error, f"fetching {topic}[{partition}]", topic=topic)
                record = _to_record(message)
                if max_bytes is not None:
                    size += len(record[4] or b"") + len(record[5] or b"")
                    if size > max_bytes and records:
                        break
                records.append(record)
                if record[2] >= end - 1:
                    break
        finally:
            fetcher.unassign()
        self._link.connected()
        return records

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (log start offset, high watermark)."""
        return self._marks([topic])[topic]

    def settled_watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """As :meth:`watermarks`, with the end at the last stable offset (read_committed):
        past every record whose transaction, if any, is settled."""
        return self._marks([topic], committed_only=True)[topic]

    def earliest_offset(self, topic: str, partition: int) -> int:
        """The partition's log start offset."""
        self._check_partition(topic, partition)
        return self.watermarks(topic)[partition][0]

    def latest_offset(self, topic: str, partition: int) -> int:
        """The partition's high watermark (the offset the next record gets)."""
        self._check_partition(topic, partition)
        return self.watermarks(topic)[partition][1]

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The first offset with a timestamp at or after ``timestamp``, None if none is."""
        self._check_partition(topic, partition)
        tp = TopicPartition(topic, partition)
        offset = self._list_offsets({tp: _spec_at(timestamp)}, "a time look-up")[tp][0]
        return None if offset < 0 else offset

    def _offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp: int
    ) -> dict[TopicPartition, int | None]:
        found = self._list_offsets({tp: _spec_at(timestamp) for tp in partitions}, "a time look-up")
        return {tp: (None if offset < 0 else offset) for tp, (offset, _) in found.items()}

    # -- consumers -------------------------------------------------------------------------

    def consumer(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[PartitionLike] | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        on_warning: Callable[[str], None] | None = None,
        session_timeout: float = 10.0,
        max_poll_interval: float = 300.0,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
    ) -> KafkaConsumer:
        """A :class:`KafkaConsumer` (see there); the parameters are the file Consumer's."""
        return KafkaConsumer(
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
        )

    # -- groups ----------------------------------------------------------------------------

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int] | Mapping[tuple[str, int], int],
        *,
        metadata: str | None = None,
    ) -> None:
        """Commit a group's offsets from outside the group (AlterConsumerGroupOffsets).

        Kafka refuses it while the group has live members:
        :class:`~pubsub.errors.FencedError`, as the file backend for partitions members own.
        """
        topic_config.validate_name(group, "group")
        entries: list[_KTP] = []
        for (topic, partition), offset in offsets.items():
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise InvalidArgumentError(
                    f"invalid offset {offset!r} for {topic}[{partition}]",
                    hint="a committed offset is the next offset to read: 0 or more",
                )
            self._check_partition(topic, partition)
            entries.append(
                _KTP(topic, partition, offset)
                if metadata is None
                else _KTP(topic, partition, offset, metadata=metadata)
            )
        if not entries:
            return
        self._alter_offsets(group, entries, "commit refused")

    def _alter_offsets(self, group: str, entries: list[_KTP], what: str) -> None:
        try:
            answer = self._retrying(
                lambda: self._admin.alter_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group, entries)], request_timeout=self.timeout
                ),
                f"{what} for group {group!r}",
                group=group,
            )[group]
        except FencedError as e:
            raise FencedError(
                f"{what}: group {group!r} has live members",
                hint="members commit their own partitions; stop them first",
            ) from e
        for ktp in answer.topic_partitions:
            if ktp.error is not None:
                error = self._link.error(
                    ktp.error, f"{what} for {ktp.topic}[{ktp.partition}]", topic=ktp.topic
                )
                if isinstance(error, FencedError):
                    raise FencedError(
                        f"{what}: group {group!r} has live members",
                        hint="members commit their own partitions; stop them first",
                    )
                raise error

    def committed_offsets(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """A group's committed offsets (all topics, or one)."""
        request = None
        if topic is not None:
            request = [_KTP(topic, p) for p in range(self._partition_count(topic))]
        try:
            answer = self._retrying(
                lambda: self._admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group, request)], request_timeout=self.timeout
                ),
                f"the offsets of group {group!r}",
                group=group,
            )[group]
        except GroupNotFoundError:
            return {}
        result: dict[TopicPartition, int] = {}
        for ktp in answer.topic_partitions or ():
            if ktp.error is None and ktp.offset >= 0:
                result[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset
        return dict(sorted(result.items()))

    def _describe_groups(self, names: Sequence[str]) -> dict[str, Any]:
        if not names:
            return {}
        futures = self._admin.describe_consumer_groups(list(names), request_timeout=self.timeout)
        answer: dict[str, Any] = {}
        for name, future in futures.items():
            try:
                answer[name] = self._wait(future, f"describing group {name!r}", group=name)
            except GroupNotFoundError:
                answer[name] = None
        return answer

    def _group_info(self, name: str, description: Any) -> GroupInfo | None:
        committed = self.committed_offsets(name)
        members: list[MemberInfo] = []
        owner: dict[TopicPartition, str] = {}
        state_name = "DEAD" if description is None else description.state.name
        if description is not None:
            for member in description.members:
                assigned = tuple(
                    sorted(
                        TopicPartition(k.topic, k.partition)
                        for k in (member.assignment.topic_partitions if member.assignment else ())
                    )
                )
                for tp in assigned:
                    owner[tp] = member.member_id
                members.append(
                    MemberInfo(
                        member_id=member.member_id,
                        host=str(member.host or "").lstrip("/"),
                        pid=None,
                        program=str(member.client_id or ""),
                        topics=tuple(sorted({tp.topic for tp in assigned})),
                        joined_ms=0,
                        heartbeat_ms=0,
                        lease_remaining_ms=None,
                        live=True,
                        partitions=assigned,
                    )
                )
        if state_name == "DEAD" and not committed and not members:
            return None
        topics = sorted({tp.topic for tp in committed} | {tp.topic for tp in owner})
        known = []
        for topic in topics:
            try:
                self._partition_count(topic)
                known.append(topic)
            except TopicNotFoundError:
                continue  # offsets left on a deleted topic
        marks = self._marks(known)
        partitions = []
        for topic in known:
            for p, (start, end) in sorted(marks[topic].items()):
                tp = TopicPartition(topic, p)
                offset = committed.get(tp)
                partitions.append(
                    PartitionLag(
                        topic=topic,
                        partition=p,
                        committed_offset=offset,
                        log_start_offset=start,
                        log_end_offset=end,
                        lag=None if offset is None else max(0, end - offset),
                        owner=owner.get(tp),
                    )
                )
        if not members:
            state = "empty"
        elif state_name == "STABLE":
            state = "stable"
        else:
            state = "rebalancing"
        # Kafka's DescribeGroups does not return the generation.
        return GroupInfo(name, state, 0, tuple(members), tuple(partitions))

    def stats(self, topics: Iterable[str] | None = None) -> Stats:
        """Topics with their watermarks and groups with their lag, as ``pubsub stats`` shows
        them. A cluster reports no sizes, record ages or rates through the client API: those
        are 0 or None (see docs/kafka.md)."""
        from pubsub.errors import TopicNotFoundError
        from pubsub.models import PartitionStats, Stats, TopicStats

        listed = {t.name: t for t in self.list_topics()}
        wanted = list(dict.fromkeys(topics)) if topics is not None else sorted(listed)
        for name in wanted:
            if name not in listed:
                raise TopicNotFoundError(name)
        result = []
        for name in wanted:
            parts = tuple(
                PartitionStats(
                    topic=name,
                    partition=p.partition,
                    records=p.next_offset - p.log_start_offset,
                    bytes=0,
                    log_start_offset=p.log_start_offset,
                    next_offset=p.next_offset,
                    oldest_ms=None,
                    newest_ms=None,
                    rate_1m=0.0,
                    rate_1h=0.0,
                )
                for p in listed[name].partition_info
            )
            result.append(TopicStats(name, parts))
        groups = self.list_groups()
        if topics is not None:
            groups = [g for g in groups if set(g.topics) & set(wanted)]
        return Stats(
            taken_ms=self.now(),
            topics=tuple(result),
            groups=tuple(groups),
            file_bytes=0,
            wal_bytes=0,
            last_retention_ms=None,
        )

    def list_groups(self) -> list[GroupInfo]:
        """Every consumer group, by name, with members, offsets and lag."""
        # An unreachable cluster answers a group listing with an empty list: ask for the
        # metadata first, which fails within the timeout as every other call does.
        self._metadata()
        future = self._admin.list_consumer_groups(request_timeout=self.timeout)
        listing = self._wait(future, "listing groups")
        names = sorted(g.group_id for g in listing.valid)
        described = self._describe_groups(names)
        infos = [self._group_info(name, described.get(name)) for name in names]
        return [info for info in infos if info is not None]

    def describe_group(self, group: str) -> GroupInfo:
        """A group's state, members, and per partition its committed offset, lag and owner;
        :class:`~pubsub.errors.GroupNotFoundError` if it has neither members nor offsets."""
        topic_config.validate_name(group, "group")
        info = self._group_info(group, self._describe_groups([group]).get(group))
        if info is None:
            raise _group_not_found(group)
        return info

    def plan_offset_reset(
        self,
        group: str,
        strategy: Strategy,
        *,
        topics: Mapping[str, Sequence[int] | None] | None = None,
        value: int | None = None,
    ) -> list[OffsetChange]:
        """What a reset would do (computed as :func:`pubsub.group_admin.plan_reset` does)."""
        if strategy not in STRATEGIES:
            raise InvalidArgumentError(
                f"unknown reset strategy {strategy!r}", hint="use one of " + ", ".join(STRATEGIES)
            )
        if strategy in ("to-offset", "shift-by", "to-datetime", "by-duration") and value is None:
            raise InvalidArgumentError(f"--{strategy} needs a value")
        topic_config.validate_name(group, "group")
        committed = self.committed_offsets(group)
        if topics is None:
            if not committed:
                self.describe_group(group)  # GroupNotFoundError when there is no such group
            topics = {tp.topic: None for tp in committed}
        now = self.now()
        plan: list[OffsetChange] = []
        for topic, wanted in sorted(topics.items()):
            count = self._partition_count(topic, refresh=True)
            chosen = list(range(count)) if wanted is None else sorted(set(wanted))
            for p in chosen:
                if not 0 <= p < count:
                    raise InvalidArgumentError(
                        f"topic {topic!r} has no partition {p}",
                        hint=f"partitions are 0 to {count - 1}",
                    )
            marks = self._marks([topic])[topic]
            found: dict[TopicPartition, int | None] = {}
            if strategy in ("to-datetime", "by-duration"):
                assert value is not None
                when = value if strategy == "to-datetime" else now - value
                found = self._offsets_for_time([TopicPartition(topic, p) for p in chosen], when)
            for p in chosen:
                start, end = marks[p]
                tp = TopicPartition(topic, p)
                current = committed.get(tp)
                base = current if current is not None else start
                if strategy == "to-earliest":
                    new = start
                elif strategy == "to-latest":
                    new = end
                elif strategy == "to-offset":
                    assert value is not None
                    new = value
                elif strategy == "shift-by":
                    assert value is not None
                    new = base + value
                elif strategy == "to-current":
                    new = base
                else:
                    hit = found.get(tp)
                    new = end if hit is None else hit
                new = min(max(new, start), end)
                plan.append(OffsetChange(topic, p, current, new))
        return plan

    def reset_offsets(
        self, group: str, plan: Sequence[OffsetChange], *, force: bool = False
    ) -> None:
        """Apply a reset plan. Refused with live members; ``force`` cannot change that on
        Kafka, which itself refuses offset changes for a group with live members."""
        topic_config.validate_name(group, "group")
        description = self._describe_groups([group]).get(group)
        live = len(description.members) if description is not None else 0
        if live and not force:
            raise GroupNotEmptyError(
                f"group {group!r} has {live} live member{'s' if live != 1 else ''}; a reset "
                "now would be undone by its commits",
                hint="stop its consumers first (or wait for their session timeout)",
            )
        entries = [_KTP(c.topic, c.partition, c.new_offset) for c in plan]
        if not entries:
            return
        try:
            self._alter_offsets(group, entries, "reset refused")
        except FencedError:
            raise GroupNotEmptyError(
                f"group {group!r} has live members: Kafka refuses to change its offsets, "
                "even with --force",
                hint="stop its consumers first (or wait for their session timeout)",
            ) from None

    def delete_group(self, group: str) -> None:
        """Delete a group and its offsets (Kafka refuses while it has live members)."""
        topic_config.validate_name(group, "group")
        futures = self._admin.delete_consumer_groups([group], request_timeout=self.timeout)
        self._wait(futures[group], f"deleting group {group!r}", group=group)

    def delete_group_offsets(self, group: str, topic: str) -> int:
        """Not available on Kafka through librdkafka (it has no OffsetDelete call):
        raises :class:`~pubsub.errors.InvalidArgumentError` after checking that the group
        and the topic exist."""
        self._partition_count(topic)
        self.describe_group(group)
        raise InvalidArgumentError(
            "deleting one topic's offsets of a group is not available on a Kafka cluster "
            "(the Kafka client library has no call for it)",
            hint=f"delete the whole group ('pubsub group delete {group}') or reset its "
            "offsets on that topic",
        )


class KafkaConsumer:
    """A Kafka consumer behind the :class:`~pubsub.backend.LogConsumer` Protocol.

    With ``group`` and ``topics`` it subscribes: the group's members (in any process, any
    Kafka client) share the partitions, and a member that dies loses them after its session
    timeout. Commits are manual (``enable.auto.commit=false``); ``auto_commit`` commits the
    consumed positions every ``auto_commit_interval`` seconds inside :meth:`poll`, when
    partitions are revoked, and at :meth:`close`. With explicit ``partitions`` (or without a
    group) it reads those from their committed offsets or ``auto_offset_reset``.
    """

    def __init__(
        self,
        cluster: KafkaCluster,
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[PartitionLike] | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        on_warning: Callable[[str], None] | None = None,
        session_timeout: float = 10.0,
        max_poll_interval: float = 300.0,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest"):
            raise InvalidArgumentError(
                f"invalid auto_offset_reset {auto_offset_reset!r}", hint="use earliest or latest"
            )
        if max_poll_records < 1:
            raise InvalidArgumentError("max_poll_records must be at least 1")
        if session_timeout <= 0:
            raise InvalidArgumentError("session_timeout must be positive")
        if group is not None:
            topic_config.validate_name(group, "group")
        self._cluster = cluster
        self.group = group
        self.auto_offset_reset: OffsetReset = auto_offset_reset
        self.auto_commit = auto_commit and group is not None
        self.auto_commit_interval = auto_commit_interval
        self.max_poll_records = max_poll_records
        self.max_poll_bytes = max_poll_bytes
        self.iter_timeout = iter_timeout
        self.on_warning: Callable[[str], None] = on_warning or _warn
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.session_timeout = session_timeout
        self._positions: dict[TopicPartition, int] = {}
        self._consumed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._stop: dict[TopicPartition, int] | None = None
        self._paused: set[TopicPartition] = set()
        self._buffer: list[_RawMessage] = []
        self._closed = False
        self._last_auto_commit = time.monotonic()
        self._joining_since: float | None = None
        self._assignment: list[TopicPartition] = []
        #: The one partition every message comes from (an assignment of one), else None.
        self._only: TopicPartition | None = None
        link = cluster._link
        settings = link.settings(
            {
                "group.id": group or f"pubsub-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": auto_offset_reset,
                "session.timeout.ms": int(session_timeout * 1000),
                "heartbeat.interval.ms": max(100, int(session_timeout * 1000) // 5),
                "max.poll.interval.ms": int(max(max_poll_interval, session_timeout) * 1000),
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "on_commit": self._on_commit,
            }
        )
        if group is not None and partitions is None:
            self._subscription = self._resolve(topics, None)
            self._consumer = _RawConsumer(settings)
            self._joining_since = time.monotonic()
            names = list(dict.fromkeys(tp.topic for tp in self._subscription))
            self._consumer.subscribe(
                names, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
            )
        else:
            self._assignment = self._resolve(topics, partitions)
            self._subscription = list(self._assignment)
            if len(self._assignment) == 1:
                # librdkafka delivers only what is assigned: every message is of this one.
                self._only = self._assignment[0]
            self._consumer = _RawConsumer(settings)
            try:
                self._start(self._assignment)
                self._consumer.assign(
                    [_KTP(tp.topic, tp.partition, self._positions[tp]) for tp in self._assignment]
                )
            except BaseException:
                self._consumer.close()
                raise

    # -- assignment and positions ----------------------------------------------------------

    def _resolve(
        self, topics: str | Iterable[str] | None, partitions: Iterable[PartitionLike] | None
    ) -> list[TopicPartition]:
        cluster = self._cluster
        if partitions is not None:
            assigned = []
            for topic, partition in partitions:
                cluster._check_partition(topic, partition)
                assigned.append(TopicPartition(topic, partition))
            if not assigned:
                raise InvalidArgumentError("no partitions to consume")
            return sorted(set(assigned))
        if topics is None:
            raise InvalidArgumentError("give topics or partitions to consume")
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names:
            raise InvalidArgumentError("give at least one topic to consume")
        assigned = []
        for name in dict.fromkeys(names):
            assigned.extend(cluster.topic_partitions(name))
        return assigned

    def _start(self, partitions: list[TopicPartition]) -> None:
        """Start positions: the group's committed offsets, else ``auto_offset_reset``."""
        committed: dict[TopicPartition, int] = {}
        if self.group is not None and partitions:
            committed = self._cluster.committed_offsets(self.group)
        marks = self._cluster._marks(tp.topic for tp in partitions) if partitions else {}
        for tp in partitions:
            start, end = marks[tp.topic][tp.partition]
            if tp in committed:
                self._committed[tp] = committed[tp]
                position = min(max(committed[tp], start), end)
            else:
                position = start if self.auto_offset_reset == "earliest" else end
            self._positions[tp] = position
            self._consumed[tp] = position

    def _assigned(self, consumer: _RawConsumer, partitions: list[_KTP]) -> None:
        tps = sorted(TopicPartition(k.topic, k.partition) for k in partitions)
        self._start(tps)
        consumer.assign([_KTP(tp.topic, tp.partition, self._positions[tp]) for tp in tps])
        self._assignment = tps
        self._joining_since = None
        self._paused.clear()
        self._apply_stops()
        if tps and self.on_assign is not None:
            self.on_assign(list(tps))

    def _revoked(self, consumer: _RawConsumer, partitions: list[_KTP]) -> None:
        tps = sorted(TopicPartition(k.topic, k.partition) for k in partitions)
        if self.auto_commit:
            offsets = {tp: o for tp, o in self._uncommitted().items() if tp in tps}
            if offsets:
                try:
                    self._commit_now(offsets)
                except PubsubError as e:
                    self.on_warning(f"group {self.group}: commit before the rebalance failed: {e}")
        self._drop(tps)
        self._joining_since = time.monotonic()
        if tps and self.on_revoke is not None:
            self.on_revoke(tps)

    def _lost(self, consumer: _RawConsumer, partitions: list[_KTP]) -> None:
        tps = sorted(TopicPartition(k.topic, k.partition) for k in partitions)
        if tps:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)
            self.on_warning(
                f"group {self.group}: this member lost {names} (its session ran out); records "
                "read since the last commit may be processed again"
            )
        self._drop(tps)
        self._joining_since = time.monotonic()
        if tps and self.on_revoke is not None:
            self.on_revoke(tps)

    def _drop(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._positions.pop(tp, None)
            self._consumed.pop(tp, None)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
        self._buffer = [
            m
            for m in self._buffer
            if TopicPartition(m.topic(), m.partition()) not in tps  # type: ignore[arg-type]
        ]
        self._assignment = [tp for tp in self._assignment if tp not in tps]

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now (a member's changes on rebalance)."""
        return list(self._assignment)

    @property
    def member_id(self) -> str | None:
        """The group member id (None outside a group or before joining)."""
        if self.group is None:
            return None
        try:
            member = self._consumer.memberid()
        except (KafkaException, RuntimeError):
            return None
        return member or None

    def _key(self, tp: PartitionLike) -> TopicPartition:
        key = TopicPartition(*tp)
        if key not in self._positions:
            raise InvalidArgumentError(f"{key.topic}[{key.partition}] is not assigned")
        return key

    def position(self, tp: PartitionLike) -> int:
        """The offset the next poll returns for ``tp``."""
        return self._positions[self._key(tp)]

    def committed(self, tp: PartitionLike) -> int | None:
        """The group's committed offset for ``tp`` as last seen by this consumer."""
        return self._committed.get(self._key(tp))

    def seek(self, tp: PartitionLike, offset: int) -> None:
        """Read ``tp`` from ``offset`` next."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"invalid offset {offset!r}")
        key = self._key(tp)
        self._positions[key] = offset
        self._consumed[key] = offset
        self._buffer = [
            m for m in self._buffer if (m.topic(), m.partition()) != (key.topic, key.partition)
        ]
        try:
            self._consumer.seek(_KTP(key.topic, key.partition, offset))
        except KafkaException:
            # Not fetching yet: assign again with every position (the same partitions).
            self._consumer.assign(
                [_KTP(t.topic, t.partition, self._positions[t]) for t in self._assignment]
            )
        self._apply_stops()

    def _targets(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        if partitions is None:
            return list(self._assignment)
        return [self._key(tp) for tp in partitions]

    def _seek_all(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.seek(tp, offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read from each partition's log start."""
        targets = self._targets(partitions)
        marks = self._cluster._marks(tp.topic for tp in targets) if targets else {}
        self._seek_all({tp: marks[tp.topic][tp.partition][0] for tp in targets})

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read only what arrives from now on."""
        targets = self._targets(partitions)
        marks = self._cluster._marks(tp.topic for tp in targets) if targets else {}
        self._seek_all({tp: marks[tp.topic][tp.partition][1] for tp in targets})

    def seek_from_end(self, count: int, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read the last ``count`` records of each partition (kcat's ``-o -N``)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgumentError(f"invalid count {count!r}")
        targets = self._targets(partitions)
        marks = self._cluster._marks(tp.topic for tp in targets) if targets else {}
        offsets = {}
        for tp in targets:
            start, end = marks[tp.topic][tp.partition]
            offsets[tp] = max(start, end - count)
        self._seek_all(offsets)

    def seek_to_time(
        self, timestamp: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Read from the first record at or after ``timestamp`` (ms), via offsets_for_times."""
        targets = self._targets(partitions)
        if not targets:
            return
        found = self._cluster._offsets_for_time(targets, timestamp)
        marks = self._cluster._marks(tp.topic for tp in targets)
        self._seek_all(
            {
                tp: marks[tp.topic][tp.partition][1] if found.get(tp) is None else found[tp]  # type: ignore[misc]
                for tp in targets
            }
        )

    def stop_at_end(self) -> dict[TopicPartition, int]:
        """Stop each partition of the subscription at its end as of now (the last stable
        offset); returns the stop offsets."""
        wanted = set(self._subscription)
        marks = self._cluster._marks((tp.topic for tp in self._subscription), committed_only=True)
        stop: dict[TopicPartition, int] = {}
        for topic, by_partition in marks.items():
            for partition, (start, end) in by_partition.items():
                tp = TopicPartition(topic, partition)
                if tp not in wanted:
                    continue
                stop[tp] = end
                position = self._positions.get(tp)
                if position is not None and position < start:
                    self.on_warning(
                        f"{topic}[{partition}]: offset {position} was deleted by retention; "
                        f"resuming at the log start {start}"
                    )
                    self.seek(tp, start)
        self._stop = stop
        self._apply_stops()
        return dict(stop)

    def stop_at(self, offsets: dict[TopicPartition, int]) -> None:
        """Deliver nothing at or after these offsets (the lower limit wins)."""
        stop = self._stop if self._stop is not None else {}
        for tp, offset in offsets.items():
            key = TopicPartition(*tp)
            stop[key] = min(offset, stop.get(key, offset))
        self._stop = stop
        self._apply_stops()

    def _apply_stops(self) -> None:
        """Pause the partitions that reached their stop offset, resume the others."""
        if self._stop is None:
            return
        done = {
            tp
            for tp in self._assignment
            if tp in self._stop and self._positions.get(tp, 0) >= self._stop[tp]
        }
        pause = done - self._paused
        resume = self._paused - done
        if pause:
            self._consumer.pause([_KTP(tp.topic, tp.partition) for tp in sorted(pause)])
        if resume:
            self._consumer.resume([_KTP(tp.topic, tp.partition) for tp in sorted(resume)])
        self._paused = done

    @property
    def at_end(self) -> bool:
        """True when every assigned partition reached its stop offset (and no assignment is
        on its way)."""
        if self._stop is None or self._joining_since is not None:
            return False
        stop = self._stop
        return all(
            self._positions[tp] >= stop.get(tp, self._positions[tp]) for tp in self._assignment
        )

    def pending_assignment(self) -> float | None:
        """None outside a rebalance; during one, the seconds until it should be over (the
        session timeout after it started; 0 once that has passed)."""
        if self._joining_since is None:
            return None
        return max(0.0, self._joining_since + self.session_timeout - time.monotonic())

    def keepalive(self) -> None:
        """Serve the group protocol between polls (a record that arrives is kept for the next
        poll): a long handler keeps its partitions."""
        if self.group is not None and not self._closed:
            message = self._consumer.poll(0)
            if message is not None:
                self._buffer.append(message)

    # -- reading ---------------------------------------------------------------------------

    def _raw_poll(self, timeout: float, limit: int) -> list[_RawMessage]:
        if self._buffer:
            taken, self._buffer = self._buffer[:limit], self._buffer[limit:]
            return taken
        first = self._consumer.poll(max(0.0, timeout))
        if first is None:
            return []
        if limit == 1:
            return [first]
        return [first, *self._consumer.consume(num_messages=limit - 1, timeout=0)]

    def _waiting_for_known_records(self) -> bool:
        """True when a stop offset says records are there that were not delivered yet."""
        if self._stop is None:
            return False
        stop = self._stop
        return any(self._positions[tp] < stop[tp] for tp in self._assignment if tp in stop)

    def _poll(self, timeout: float, max_records: int | None) -> list[Record]:
        if self._closed:
            raise InvalidArgumentError("the consumer is closed")
        self._maybe_auto_commit()
        limit = self.max_poll_records if max_records is None else max_records
        if limit < 1:
            raise InvalidArgumentError("max_records must be at least 1")
        deadline = time.monotonic() + timeout
        # Records below a known end are there, only not fetched yet: worth waiting for, as
        # the file backend would return them at once.
        patience = time.monotonic() + self._cluster.timeout
        positions = self._positions
        stop = self._stop
        byte_budget = self.max_poll_bytes
        records: list[Record] = []
        size = 0
        while True:
            now = time.monotonic()
            wait = deadline - now
            if wait <= 0:
                waiting = self._waiting_for_known_records() and now < patience
                wait = min(0.1, patience - now) if waiting else 0.0
            messages = self._raw_poll(wait, limit - len(records))
            taken = self._take(
                messages, records, None if byte_budget is None else byte_budget - size
            )
            if taken is not None:
                size += taken
                messages = []
            new = tuple.__new__
            append = records.append
            for index, message in enumerate(messages):
                error = message.error()
                if error is not None:
                    if error.code() == _EOF:
                        self._reached_end(message)
                        continue
                    raise self._cluster._link.error(error, "consuming", topic=message.topic())
                # A plain (topic, partition) tuple finds the TopicPartition keys: equal hashes.
                tp = (message.topic(), message.partition())
                offset: int = message.offset()  # type: ignore[assignment]
                position = positions.get(tp)  # type: ignore[call-overload]
                if position is None or offset < position:
                    continue  # revoked meanwhile, or fetched before a seek
                if stop is not None and offset >= stop.get(tp, offset + 1):  # type: ignore[call-overload]
                    self._apply_stops()
                    continue
                key = message.key()
                value = message.value()
                if byte_budget is not None:
                    size += (len(key) if key else 0) + (len(value) if value else 0)
                    if size > byte_budget and records:
                        self._buffer = list(messages[index:]) + self._buffer
                        break
                headers = message.headers()
                append(
                    new(
                        Record,
                        (
                            tp[0],
                            tp[1],
                            offset,
                            message.timestamp()[1],
                            key,
                            value,
                            _encode_headers(headers) if headers else None,
                        ),
                    )
                )
                positions[tp] = offset + 1  # type: ignore[index]
                if stop is not None and offset + 1 >= stop.get(tp, offset + 2):  # type: ignore[call-overload]
                    self._apply_stops()
            if records:
                break
            now = time.monotonic()
            if now >= deadline and not (self._waiting_for_known_records() and now < patience):
                break
        return records

    def _reached_end(self, message: _RawMessage) -> None:
        """The end of a partition: the position moves to it. After a transaction the end
        is past its commit marker, which a consumer never receives as a record, so without
        this a partition written by a transactional producer never reaches its stop."""
        tp = TopicPartition(message.topic(), message.partition())  # type: ignore[arg-type]
        end = message.offset()
        position = self._positions.get(tp)
        if position is not None and end is not None and end > position:
            self._positions[tp] = end
            if self._consumed.get(tp) == position:
                self._consumed[tp] = end
            self._apply_stops()

    def _take(
        self, messages: list[_RawMessage], records: list[Record], budget: int | None
    ) -> int | None:
        """Append the records of a batch from one partition to ``records`` in C loops (the
        usual batch); the bytes of their keys and values. None, with nothing changed, when the
        batch needs the per-message path: an error or end-of-partition event in it, several
        partitions, offsets out of order, or more bytes than ``budget``."""
        n = len(messages)
        if not n or any(map(_error_of, messages)):
            return None if n else 0
        only = self._only
        if only is not None:
            topic, partition = only
        else:
            first = messages[0]
            topic = first.topic()  # type: ignore[assignment]
            partition = first.partition()  # type: ignore[assignment]
        if (
            only is None
            and n > 1
            and (
                list(map(_partition_of, messages)).count(partition) != n
                or list(map(_topic_of, messages)).count(topic) != n
            )
        ):
            return None
        tp = (topic, partition)
        position = self._positions.get(tp)  # type: ignore[call-overload]
        if position is None:
            return 0  # revoked meanwhile
        stop = self._stop
        end: int | None = None if stop is None else stop.get(tp)  # type: ignore[call-overload]
        offsets: list[int] = list(map(_offset_of, messages))  # type: ignore[arg-type]
        cut = False
        if offsets[0] < position or (end is not None and offsets[-1] >= end):
            # Fetched before a seek, or past the stop offset: keep the records in between.
            if offsets != sorted(offsets):
                return None
            low = bisect.bisect_left(offsets, position)
            high = n if end is None else max(low, bisect.bisect_left(offsets, end))
            cut = high < n
            messages = messages[low:high]
            offsets = offsets[low:high]
        keys = list(map(_key_of, messages))
        values = list(map(_value_of, messages))
        size = sum(map(len, filter(None, keys))) + sum(map(len, filter(None, values)))
        if budget is not None and size > budget and (records or len(messages) > 1):
            return None  # the per-message path cuts the batch where the budget ends
        if messages:
            headers: list[Any] = list(map(_headers_of, messages))
            if any(headers):
                headers = [_encode_headers(h) if h else None for h in headers]
            records.extend(
                map(
                    _new_record,
                    repeat(Record),
                    zip(
                        repeat(topic),
                        repeat(partition),
                        offsets,
                        map(_second, map(_timestamp_of, messages)),
                        keys,
                        values,
                        headers,
                    ),
                )
            )
            self._positions[tp] = offsets[-1] + 1  # type: ignore[index]
        if cut or (end is not None and messages and offsets[-1] + 1 >= end):
            self._apply_stops()
        return size

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Record]:
        """Records after the positions, waiting up to ``timeout`` s for the first.

        Records below a stop offset (:meth:`stop_at_end`) are waited for up to the cluster's
        timeout even when ``timeout`` is shorter: they exist, they were only not fetched yet.
        """
        records = self._poll(timeout, max_records)
        self._consumed.update(self._positions)
        return records

    def poll_values(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[tuple[str, int, int, bytes | None]]:
        """As poll, but ``(topic, partition, offset, value)`` only."""
        return [(r[0], r[1], r[2], r[5]) for r in self.poll(timeout, max_records)]

    def __iter__(self) -> Iterator[Record]:
        """Yield records one by one, waiting for new ones (see ``iter_timeout``)."""
        wait = float("inf") if self.iter_timeout is None else self.iter_timeout
        while True:
            records = self._poll(min(wait, 3600.0), None)
            if not records:
                if wait == float("inf"):
                    continue
                return
            for record in records:
                self._consumed[TopicPartition(record[0], record[1])] = record[2] + 1
                yield record

    # -- committing ------------------------------------------------------------------------

    def _uncommitted(self) -> dict[TopicPartition, int]:
        committed = self._committed
        return {
            tp: o
            for tp, o in self._consumed.items()
            if committed.get(tp) != o and tp in self._positions
        }

    def _commit_now(self, offsets: Mapping[TopicPartition, int]) -> None:
        link = self._cluster._link
        entries = [_KTP(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        try:
            answer = self._consumer.commit(offsets=entries, asynchronous=False)
        except KafkaException as e:
            error = e.args[0]
            if error.code() == _NO_OFFSET:
                return
            raise link.error(error, f"commit for group {self.group!r}", group=self.group) from None
        for ktp in answer or ():
            if ktp.error is not None:
                raise link.error(
                    ktp.error,
                    f"commit of {ktp.topic}[{ktp.partition}] for group {self.group!r}",
                    topic=ktp.topic,
                    group=self.group,
                )
        self._committed.update(offsets)

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the consumed positions (or ``offsets``) for the group, synchronously.

        Raises :class:`~pubsub.errors.FencedError` when the group rebalanced and this member
        no longer owns a partition.
        """
        if self._closed:
            raise InvalidArgumentError("the consumer is closed")
        if self.group is None:
            raise InvalidArgumentError(
                "this consumer has no group, so it has nothing to commit",
                hint="create it with group=NAME",
            )
        if offsets is None:
            offsets = self._uncommitted()
        if not offsets:
            return
        self._commit_now({TopicPartition(*tp): o for tp, o in offsets.items()})
        self._last_auto_commit = time.monotonic()

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit in the background; :meth:`committed` shows it once the cluster confirmed
        it, a failure is reported to ``on_warning`` and the offsets stay uncommitted."""
        if self._closed:
            raise InvalidArgumentError("the consumer is closed")
        if self.group is None:
            raise InvalidArgumentError("this consumer has no group, so it has nothing to commit")
        if offsets is None:
            offsets = self._uncommitted()
        if not offsets:
            return
        entries = [_KTP(tp[0], tp[1], o) for tp, o in offsets.items()]
        self._consumer.commit(offsets=entries, asynchronous=True)

    def _on_commit(self, error: KafkaError | None, partitions: list[_KTP]) -> None:
        if error is not None and error.code() != _NO_OFFSET:
            self.on_warning(
                f"group {self.group}: a commit failed: "
                f"{scrub(error.str(), self._cluster._link.config)}"
            )
            return
        for ktp in partitions:
            if ktp.error is None and ktp.offset >= 0:
                self._committed[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset

    def _maybe_auto_commit(self) -> None:
        if (
            self.auto_commit
            and time.monotonic() - self._last_auto_commit >= self.auto_commit_interval
        ):
            try:
                self.commit()
            except FencedError as e:
                self._last_auto_commit = time.monotonic()
                self.on_warning(f"{e.message}; the group is rebalancing")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, *, commit: bool | None = None) -> None:
        """Commit (when auto-committing or asked to), leave the group and release."""
        if self._closed:
            return
        wanted = commit if commit is not None else self.auto_commit
        try:
            if wanted and self.group is not None:
                offsets = self._uncommitted()
                if offsets:
                    try:
                        self._commit_now(offsets)
                    except FencedError as e:
                        self.on_warning(f"group {self.group}: offsets not committed on close: {e}")
        finally:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close(commit=False)
        except PubsubError as error:
            self.on_warning(f"closing after an error: {error.message}")


def _warn(message: str) -> None:
    import warnings

    from pubsub.consumer import PubsubWarning

    warnings.warn(message, PubsubWarning, stacklevel=4)


if TYPE_CHECKING:

    def _protocols(cluster: KafkaCluster, consumer: KafkaConsumer) -> None:
        """Checked by mypy, never run: both classes satisfy the backend Protocols."""
        client: LogClient = cluster
        reader: LogConsumer = consumer
        del client, reader
