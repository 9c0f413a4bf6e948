"""A Kafka cluster as a mirror's source or destination (see :mod:`pubsub.mirror.engine`).

As a destination, exactly once follows the pattern of Kafka Connect's exactly-once source
connectors (KIP-618): a transactional producer whose ``transactional.id`` is derived from the
mirror's name writes each batch's records *and* the source positions they reach, as records
of the compacted topic ``__pubsub_mirror_offsets`` (key: the mirror, source topic and
partition), in one Kafka transaction. At start-up (and after any failure) a new producer
calls ``init_transactions``, which fences an earlier process of the same mirror and settles
its open transaction, and the positions are read back with ``isolation.level=read_committed``.
A consumer reading the destination with ``read_committed`` sees every record once.

With ``exactly_once=False`` the producer is only idempotent: positions are written after the
batch's records were acknowledged, so a crash can repeat the batch that was in flight.

As a source, partitions are assigned (no group, nothing committed to Kafka) and read with
``read_committed``; the end of a partition is the event librdkafka sends when it gets there,
which is past the transaction markers that follow the last record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as _KTP

from pubsub.errors import (
    FencedError,
    InvalidArgumentError,
    PubsubError,
    TopicNotFoundError,
    UnavailableError,
)
from pubsub.kafka.cluster import LOGGER_NAME, KafkaCluster
from pubsub.kafka.url import client_config, describe_target, scrub
from pubsub.mirror.model import (
    COPIED_CONFIG,
    ORIGIN_HEADER,
    Chunk,
    TopicSpec,
    TopicWrite,
    empty_chunk,
    start_positions,
)
from pubsub.records import TopicPartition

__all__ = ["OFFSETS_TOPIC", "KafkaSink", "KafkaSource", "read_mirror_offsets"]

#: Where mirrors into a cluster keep their source positions (compacted, one partition).
OFFSETS_TOPIC = "__pubsub_mirror_offsets"
#: The librdkafka buffers are bounded so that a mirror's memory is, whatever the backlog.
_QUEUE_KBYTES = 16 * 1024
_logger = logging.getLogger(LOGGER_NAME)
_EOF = KafkaError._PARTITION_EOF
_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


_Headers = list[tuple[str, str | bytes | None]]


def _total(column: list[bytes | None]) -> int:
    return sum(map(len, filter(None, column)))


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


class _Errors:
    """librdkafka's error callback: remembers the last error, reports changes once."""

    def __init__(self, shown: str, config: dict[str, str], on_log: Callable[[str], None]) -> None:
        self.shown = shown
        self.config = config
        self.on_log = on_log
        self.last: str | None = None

    def __call__(self, error: KafkaError) -> None:
        text = scrub(error.str(), self.config)
        if text != self.last:
            self.last = text
            self.on_log(f"kafka {self.shown}: {text}")

    def ok(self) -> None:
        if self.last is not None:
            self.last = None

    def settings(self, extra: dict[str, Any]) -> dict[str, Any]:
        # librdkafka spaces its first connections by half this backoff (50 ms by default):
        # every client of a mirror paid that before its first answer. Backing off still
        # doubles up to reconnect.backoff.max.ms while a broker stays away.
        merged: dict[str, Any] = {"reconnect.backoff.ms": 10}
        merged.update(extra)
        merged.update(self.config)
        merged["logger"] = _logger
        merged["error_cb"] = self
        return merged

    def unavailable(self, what: str, exc: KafkaException | None = None) -> UnavailableError:
        error = None if exc is None else _kafka_error(exc)
        detail = scrub(error.str(), self.config) if error is not None else self.last
        return UnavailableError(
            f"the Kafka cluster at {self.shown}: {what} failed" + (f" ({detail})" if detail else "")
        )


def _cluster_id(client: Consumer | Producer, errors: _Errors, timeout: float) -> str:
    try:
        metadata = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise errors.unavailable("a metadata request", exc) from None
    cluster_id = metadata.cluster_id
    if not cluster_id:
        raise errors.unavailable("a metadata request (no cluster id)")
    return str(cluster_id)


def _spec(cluster: KafkaCluster, topic: str) -> TopicSpec:
    info = cluster.describe_topic(topic)
    config = dict(info.config)
    config.update(info.overrides)
    return TopicSpec(topic, info.partitions, {k: config[k] for k in COPIED_CONFIG if config.get(k)})


class KafkaSource:
    """Reads assigned partitions of a cluster from given offsets (``read_committed``)."""

    def __init__(
        self,
        url: str,
        *,
        mirror: str,
        config_file: str | None = None,
        timeout: float = 10.0,
        on_log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.shown = describe_target(url)
        self.timeout = timeout
        config = client_config(url, config_file=config_file)
        self._errors = _Errors(self.shown, config, on_log)
        self.cluster = KafkaCluster(url, config_file=config_file, timeout=timeout)
        self._consumer = Consumer(
            self._errors.settings(
                {
                    "group.id": f"pubsub-mirror-{mirror}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    # librdkafka prefetches up to these per partition; each message costs
                    # a few hundred bytes beyond its payload, so both bounds matter.
                    "queued.max.messages.kbytes": _QUEUE_KBYTES // 4,
                    "queued.min.messages": 10_000,
                    "fetch.max.bytes": 4 * 1024 * 1024,
                    "fetch.queue.backoff.ms": 10,
                }
            )
        )
        try:
            self.source_id = _cluster_id(self._consumer, self._errors, timeout)
        except BaseException:
            self._consumer.close()
            raise
        self._positions: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        self._buffer: list[Any] = []

    def topics(self) -> list[str]:
        return [info.name for info in self.cluster.list_topics()]

    def spec(self, topic: str) -> TopicSpec:
        return _spec(self.cluster, topic)

    def assign(self, positions: dict[TopicPartition, int | None]) -> list[Chunk]:
        starts, gaps = start_positions(positions, self.cluster.watermarks, clamp_to_end=False)
        self._positions.update(starts)
        self._buffer = []
        try:
            self._consumer.assign(
                [_KTP(tp.topic, tp.partition, o) for tp, o in self._positions.items()]
            )
        except KafkaException as exc:
            raise self._errors.unavailable("assigning partitions", exc) from None
        return gaps

    def ends(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for topic in dict.fromkeys(tp.topic for tp in self._positions):
            for partition, (_, end) in self.cluster.settled_watermarks(topic).items():
                tp = TopicPartition(topic, partition)
                if tp in self._positions:
                    # The stable end is past the last marker; a position at the last record's
                    # next offset is caught up when the end event said so.
                    out[tp] = min(end, max(self._ends.get(tp, end), self._positions[tp]))
        return out

    def poll(self, timeout: float, max_records: int, max_bytes: int) -> list[Chunk]:
        if self._buffer:
            messages, self._buffer = self._buffer, []
        else:
            try:
                messages = self._consumer.consume(num_messages=max_records, timeout=timeout)
            except KafkaException as exc:
                raise self._errors.unavailable("consuming", exc) from None
        positions = self._positions
        taken: dict[Any, tuple[list[Any], list[int]]] = {}
        ended: dict[TopicPartition, int] = {}
        for message in messages:
            # A plain (topic, partition) tuple finds the TopicPartition keys: equal hashes.
            tp: Any = (message.topic(), message.partition())
            position = positions.get(tp)
            if position is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == _EOF:
                    tp = TopicPartition(*tp)
                    offset = message.offset()
                    self._ends[tp] = offset
                    if offset > position:
                        positions[tp] = offset
                        ended[tp] = offset
                    continue
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise TopicNotFoundError(tp[0])
                raise self._errors.unavailable("consuming", KafkaException(error))
            offset = message.offset()
            if offset < position:
                continue
            found = taken.get(tp)
            if found is None:
                found = taken[tp] = ([], [])
            found[0].append(message)
            found[1].append(offset)
            positions[tp] = offset + 1
        columns = {
            tp: ([m.key() for m in got[0]], [m.value() for m in got[0]])
            for tp, got in taken.items()
        }
        size = sum(_total(keys) + _total(values) for keys, values in columns.values())
        if size > max_bytes and self._cut(messages, taken, max_bytes):
            columns = {
                tp: ([m.key() for m in got[0]], [m.value() for m in got[0]])
                for tp, got in taken.items()
            }
        chunks: list[Chunk] = []
        for seen in {**taken, **ended}:
            tp = TopicPartition(*seen)
            at = positions[tp]
            end = max(self._ends.get(tp, 0), at)
            if seen not in taken:
                chunks.append(empty_chunk(tp.topic, tp.partition, at, end, 0))
                continue
            batch, offsets = taken[seen]
            keys, values = columns[seen]
            raw_headers = [m.headers() for m in batch]
            chunks.append(
                Chunk(
                    tp.topic,
                    tp.partition,
                    offsets,
                    [m.timestamp()[1] for m in batch],
                    keys,
                    values,
                    [tuple(h) if h else None for h in raw_headers] if any(raw_headers) else None,
                    at,
                    end,
                    0,
                )
            )
        self._errors.ok()
        return chunks

    def _cut(
        self, messages: list[Any], taken: dict[Any, tuple[list[Any], list[int]]], max_bytes: int
    ) -> bool:
        """Keep the records of ``taken`` up to the one past ``max_bytes`` (at least one);
        the rest of ``messages`` waits in the buffer for the next poll, positions put back.
        False when nothing was cut."""
        size = 0
        kept = 0
        rest: list[Any] = []
        for index, message in enumerate(messages):
            if message.error() is not None:
                continue
            key, value = message.key(), message.value()
            size += (len(key) if key else 0) + (len(value) if value else 0)
            if size > max_bytes and kept:
                rest = messages[index:]
                break
            kept += 1
        if not rest:
            return False
        self._buffer = rest
        dropped = {id(m) for m in rest}
        for tp, (batch, offsets) in list(taken.items()):
            count = sum(1 for m in batch if id(m) not in dropped)
            if count < len(batch):
                self._positions[TopicPartition(*tp)] = offsets[count]
                del batch[count:], offsets[count:]
            if not batch:
                del taken[tp]
        return True

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self.cluster.close()


class KafkaSink:
    """Writes forwarded records and positions to a cluster, in one transaction per batch."""

    def __init__(
        self,
        url: str,
        *,
        mirror: str,
        source_id: str,
        source: str,
        exactly_once: bool = True,
        compression: str = "none",
        config_file: str | None = None,
        timeout: float = 10.0,
        on_log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.shown = describe_target(url)
        self.mirror = mirror
        self.source_id = source_id
        self.source = source
        self.exactly_once = exactly_once
        self.compression = compression
        self.timeout = timeout
        self._config = client_config(url, config_file=config_file)
        self._errors = _Errors(self.shown, self._config, on_log)
        self.cluster = KafkaCluster(url, config_file=config_file, timeout=timeout)
        self._failed: list[str] = []
        # The producer the first batch uses answers the cluster id (a client's first request
        # costs tens of milliseconds: one client, not a probe and then the producer).
        # The consumer that reads the positions back connects meanwhile.
        self._reader = _offsets_reader(self._errors, f"pubsub-mirror-{mirror}")
        self._producer: Producer | None = self._client()
        try:
            self.dest_id = _cluster_id(self._producer, self._errors, timeout)
        except BaseException:
            self._drop_producer()
            self._reader.close()
            raise
        self._initialised = False

    # -- the producer ----------------------------------------------------------------------

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failed.append(scrub(error.str(), self._config))

    def _new_producer(self) -> Producer:
        """The producer, transactions initialised (this fences an earlier process)."""
        producer = self._client()
        self._init(producer)
        return producer

    def _ready(self) -> Producer:
        """The producer to write with: the one made at the start, or a new one."""
        if self._producer is None:
            self._producer = self._new_producer()
        elif not self._initialised:
            self._init(self._producer)
        self._initialised = True
        return self._producer

    def _init(self, producer: Producer) -> None:
        if self.exactly_once:
            try:
                producer.init_transactions(self.timeout)
            except KafkaException as exc:
                raise self._failure("starting the transactional producer", exc) from None

    def _client(self) -> Producer:
        settings: dict[str, Any] = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": self.compression,
            "queue.buffering.max.kbytes": _QUEUE_KBYTES,
            "message.timeout.ms": max(30_000, int(self.timeout * 1000)),
        }
        if self.exactly_once:
            settings["transactional.id"] = f"pubsub-mirror-{self.mirror}"
            settings["transaction.timeout.ms"] = 60_000
        else:
            settings["on_delivery"] = self._delivered
        return Producer(self._errors.settings(settings))

    def _failure(self, what: str, exc: KafkaException) -> PubsubError:
        error = _kafka_error(exc)
        if error is not None and error.code() in _FENCED:
            return FencedError(
                f"mirror {self.mirror!r}: another process of the same mirror took over "
                f"{self.shown} ({scrub(error.str(), self._config)})",
                hint="run one process per mirror name",
            )
        return self._errors.unavailable(what, exc)

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.purge()
                producer.flush(0)
            except (KafkaException, RuntimeError):
                pass

    # -- positions -------------------------------------------------------------------------

    def load_positions(self) -> dict[TopicPartition, int]:
        self._ready()
        self.cluster.create_topic(
            OFFSETS_TOPIC, 1, {"cleanup.policy": "compact"}, if_not_exists=True
        )
        return self._read_positions()

    def _read_positions(self) -> dict[TopicPartition, int]:
        entries = _read_offsets(self.cluster, self._reader, self._errors, self.timeout, self.mirror)
        found: dict[TopicPartition, int] = {}
        sources: dict[str, str] = {}
        for (_, topic, partition), entry in entries.items():
            found[TopicPartition(topic, partition)] = int(entry["next_offset"])
            sources[entry["source_id"]] = str(entry.get("source", ""))
        other = {s: shown for s, shown in sources.items() if s != self.source_id}
        if other:
            source_id, shown = next(iter(other.items()))
            raise InvalidArgumentError(
                f"mirror {self.mirror!r} at {self.shown} forwards from another source "
                f"({shown}, id {source_id})",
                hint="give this mirror another --name",
            )
        return found

    def recover(self) -> dict[TopicPartition, int]:
        self._drop_producer()
        return self.load_positions()

    # -- topics ----------------------------------------------------------------------------

    def topic_partitions(self, topic: str) -> int | None:
        try:
            return self.cluster.describe_topic(topic).partitions
        except TopicNotFoundError:
            return None

    def create_topic(self, spec: TopicSpec) -> None:
        self.cluster.create_topic(spec.name, spec.partitions, spec.config, if_not_exists=True)

    # -- writing ---------------------------------------------------------------------------

    def write(self, writes: Sequence[TopicWrite]) -> None:
        self.write_begin(writes)()

    def write_begin(self, writes: Sequence[TopicWrite]) -> Callable[[], None]:
        """Send a batch (records, and in a transaction its positions); returns what commits
        it, which blocks until the cluster has it and may run in another thread while the
        mirror reads the next batch (nothing else uses the producer until it returned)."""
        producer = self._ready()
        with self._failing():
            if self.exactly_once:
                producer.begin_transaction()
            for write in writes:
                self._send(producer, write)
            if self.exactly_once:
                self._send_positions(producer, writes)
        return functools.partial(self._finish, producer, writes)

    def _finish(self, producer: Producer, writes: Sequence[TopicWrite]) -> None:
        with self._failing():
            if self.exactly_once:
                producer.commit_transaction(self.timeout)
            else:
                # At least once: the positions only after every record was acknowledged.
                self._flush(producer, "delivering records")
                self._send_positions(producer, writes)
                self._flush(producer, "delivering positions")
        self._errors.ok()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A failure drops the producer (a new one fences and settles what was open)."""
        try:
            yield
        except KafkaException as exc:
            self._drop_producer()
            raise self._failure("committing a batch", exc) from None
        except UnavailableError:
            self._drop_producer()
            raise

    def _send_positions(self, producer: Producer, writes: Sequence[TopicWrite]) -> None:
        now = int(time.time() * 1000)
        for write in writes:
            for p in write.positions:
                key = json.dumps([self.mirror, p.topic, p.partition]).encode()
                value = json.dumps(
                    {
                        "next_offset": p.next_offset,
                        "source_end": p.source_end,
                        "skipped": p.skipped,
                        "source_id": self.source_id,
                        "source": self.source,
                        "updated_ms": now,
                    }
                ).encode()
                self._produce(producer, OFFSETS_TOPIC, value, key, 0, None, None)

    def _send(self, producer: Producer, write: TopicWrite) -> None:
        topic = write.topic
        produce = producer.produce
        for part in write.parts:
            origin = part.origin
            if (
                part.headers is None
                and origin is not None
                and part.partitions is None
                and (not part.timestamps or min(part.timestamps) > 0)
            ):
                # The common case in one tight loop: one partition, the origin header only.
                partition = part.partition
                for offset, timestamp, key, value in zip(
                    part.offsets, part.timestamps, part.keys, part.values, strict=True
                ):
                    only: _Headers = [(ORIGIN_HEADER, f"{origin}{offset}")]
                    try:
                        produce(topic, value, key, partition, timestamp=timestamp, headers=only)
                    except BufferError:
                        self._produce(producer, topic, value, key, partition, timestamp, only)
                continue
            partitions = part.partitions or repeat(part.partition)
            given = part.headers if part.headers is not None else repeat(None)
            for offset, timestamp, key, value, target, own in zip(
                part.offsets,
                part.timestamps,
                part.keys,
                part.values,
                partitions,
                given,
                strict=False,
            ):
                headers: _Headers | None = None
                if own is not None:
                    headers = list(own)
                elif origin is not None:
                    headers = [(ORIGIN_HEADER, f"{origin}{offset}")]
                self._produce(producer, topic, value, key, target, timestamp, headers)

    def _produce(
        self,
        producer: Producer,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        timestamp: int | None,
        headers: _Headers | None,
    ) -> None:
        """Produce, waiting while librdkafka's bounded queue is full."""
        deadline = time.monotonic() + max(30.0, self.timeout)
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    partition,
                    timestamp=timestamp if timestamp is not None and timestamp > 0 else 0,
                    headers=headers,
                )
                return
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise self._errors.unavailable("producing (the queue stayed full)") from None

    def _flush(self, producer: Producer, what: str) -> None:
        left = producer.flush(self.timeout)
        if left or self._failed:
            detail = self._failed[0] if self._failed else f"{left} records not acknowledged"
            self._failed = []
            raise UnavailableError(f"the Kafka cluster at {self.shown}: {what} failed ({detail})")

    def close(self) -> None:
        self._drop_producer()
        with contextlib.suppress(KafkaException, RuntimeError):
            self._reader.close()
        self.cluster.close()


def _offsets_reader(errors: _Errors, group: str) -> Consumer:
    """A consumer for ``__pubsub_mirror_offsets`` (read_committed, the end reported)."""
    return Consumer(
        errors.settings(
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # the end is reached when a fetch comes back empty: do not wait for one
                "fetch.wait.max.ms": 10,
            }
        )
    )


def _read_offsets(
    cluster: KafkaCluster,
    consumer: Consumer,
    errors: _Errors,
    timeout: float,
    mirror: str | None,
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The committed positions in ``__pubsub_mirror_offsets`` (of ``mirror`` only, if
    given): per (mirror, source topic, partition), the last entry.

    After init_transactions no transaction of the mirror is open: the stable end is past
    every position it committed. An empty topic needs no fetch."""
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    start, end = cluster.settled_watermarks(OFFSETS_TOPIC)[0]
    if start >= end:
        return found
    prefix = json.dumps([mirror])[:-1] + "," if mirror is not None else "["
    try:
        # An absolute offset: a logical one (the beginning) costs librdkafka's offset
        # query timer (half a second) before the first fetch.
        consumer.assign([_KTP(OFFSETS_TOPIC, 0, start)])
        # The leader is learnt now, not at librdkafka's next metadata refresh (up to a
        # second later) when the consumer connected before the topic was assigned.
        consumer.list_topics(OFFSETS_TOPIC, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            # consume() waits for its whole timeout unless the count is reached
            messages = consumer.consume(num_messages=1000, timeout=0.005)
            done = False
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == _EOF:
                        done = True
                        continue
                    raise errors.unavailable("reading the mirror positions", KafkaException(error))
                offset = message.offset()
                if offset is not None and offset >= end - 1:
                    done = True  # the last record below the stable end
                key = message.key()
                if not key or not key.decode("utf-8", "replace").startswith(prefix):
                    continue
                name, topic, partition = json.loads(key)
                value = message.value()
                at = (str(name), str(topic), int(partition))
                if value is None:
                    found.pop(at, None)
                    continue
                found[at] = json.loads(value)
            if done:
                break
            if time.monotonic() > deadline:
                raise errors.unavailable("reading the mirror positions")
    except KafkaException as exc:
        raise errors.unavailable("reading the mirror positions", exc) from None
    finally:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.unassign()
    return found


def read_mirror_offsets(
    url: str,
    mirror: str | None = None,
    *,
    config_file: str | None = None,
    timeout: float = 10.0,
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """What the mirrors into the cluster at ``url`` committed (read_committed): per
    (mirror, source topic, partition), the entry with ``next_offset``, ``source_end``,
    ``skipped``, ``source_id``, ``source`` and ``updated_ms``. Empty when no mirror wrote."""
    shown = describe_target(url)
    errors = _Errors(shown, client_config(url, config_file=config_file), lambda line: None)
    with KafkaCluster(url, config_file=config_file, timeout=timeout) as cluster:
        try:
            cluster.describe_topic(OFFSETS_TOPIC)
        except TopicNotFoundError:
            return {}
        consumer = _offsets_reader(errors, f"pubsub-mirror-status-{uuid.uuid4().hex[:8]}")
        try:
            return _read_offsets(cluster, consumer, errors, timeout, mirror)
        finally:
            consumer.close()
