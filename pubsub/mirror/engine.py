"""The mirror: read a batch from the source, commit it with its positions at the destination.

One loop, whatever the ends are (:mod:`pubsub.mirror.files` for a database file,
:mod:`pubsub.kafka.mirror` for a Kafka cluster, imported only when a ``kafka://`` end is
given):

1. the destination's committed positions say where to read (a Kafka destination first
   fences any earlier process of the same mirror name);
2. a batch of at most ``max_batch_records`` records and ``max_batch_bytes`` bytes is read,
   each record gains its ``pubsub-origin`` header, records whose origin is the destination
   itself are dropped (two mirrors in opposite directions do not loop);
3. the sink commits the records and the positions they reach together; a failure is retried
   forever with capped exponential backoff and jitter, the batch held in memory (and trimmed
   to what the destination had not committed yet, if the failure hid a commit);
4. a file source gets the progress too (``pubsub mirror status``, ``retention.hold.mirrors``).

A sink that can finish a commit apart from sending the batch (a Kafka transaction:
``write_begin``) commits in a background thread while the next batch is read; that commit is
settled (waited for, retried on failure) before the next batch is sent and before the mirror
stops, and nothing counts as forwarded until it is settled.

A stop request (SIGTERM, SIGINT) is honoured between batches: the batch in flight is
committed first. During an outage the batch that cannot be committed is dropped and read
again next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pubsub.client import is_file
from pubsub.errors import (
    BusyError,
    FencedError,
    InvalidArgumentError,
    PubsubError,
    StorageError,
    StorageFullError,
    TopicNotFoundError,
)
from pubsub.mirror.model import (
    ORIGIN_HEADER,
    Chunk,
    Part,
    Position,
    Sink,
    Source,
    TopicSpec,
    TopicWrite,
)
from pubsub.partitioner import partition_for_key
from pubsub.records import Header, TopicPartition

if TYPE_CHECKING:
    pass

__all__ = ["Event", "Mirror", "MirrorOptions", "default_name"]

#: Errors worth waiting out: an unreachable cluster, a full disk, a locked file.
RETRIABLE: tuple[type[PubsubError], ...] = (StorageError, BusyError)
#: Backoff between attempts: from BACKOFF_MIN s, doubling, at most BACKOFF_MAX s, full jitter.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
#: How often a following mirror looks for new topics that match its selection.
DISCOVER_SECONDS = 10.0


@dataclass
class MirrorOptions:
    """What ``pubsub mirror`` was asked to do (see docs/mirror.md)."""

    source: str
    destination: str
    topics: list[str] = field(default_factory=list)
    exclude: str | None = None
    rename: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    name: str | None = None
    once: bool = False
    exactly_once: bool = True
    create: bool = True
    repartition: bool = False
    origin: bool = True
    compression: str = "none"
    max_batch_records: int = 25_000
    max_batch_bytes: int = 8 * 1024 * 1024
    kafka_config_file: str | None = None
    kafka_timeout: float = 10.0
    sync: str = "full"
    busy_timeout: float = 10.0


class Event(dict[str, Any]):
    """A change of the mirror's state: ``event`` names it, ``text`` says it for people."""

    @property
    def text(self) -> str:
        return str(self["text"])


def _shown(target: str) -> str:
    if is_file(target):
        return os.path.abspath(target)
    from pubsub.kafka.url import describe_target

    return describe_target(target)


def default_name(options: MirrorOptions) -> str:
    """A name derived from the source, the destination and the selection: the same command
    line gets the same name (and so resumes where it stopped)."""
    parts = [
        _shown(options.source),
        _shown(options.destination),
        ",".join(sorted(options.topics)),
        options.exclude or "",
        ",".join(f"{k}={v}" for k, v in sorted(options.rename.items())),
        options.prefix,
    ]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return f"mirror-{digest}"


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(attempt, 16)))


def _origin_of(headers: tuple[Header, ...]) -> bytes | None:
    for name, value in headers:
        if name == ORIGIN_HEADER:
            return value
    return None


class Mirror:
    """One mirror run. ``on_event`` hears each state change, ``on_progress`` each committed
    batch; ``should_stop`` is asked between batches and while waiting."""

    def __init__(
        self,
        options: MirrorOptions,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if options.max_batch_records < 1 or options.max_batch_bytes < 1:
            raise InvalidArgumentError("the batch limits must be at least 1")
        self.options = options
        self.name = options.name or default_name(options)
        from pubsub.config import validate_name

        validate_name(self.name, "mirror")
        self._selection = [re.compile(t[1:]) if t.startswith("^") else t for t in options.topics]
        try:
            self._exclude = re.compile(options.exclude) if options.exclude else None
        except re.error as exc:
            raise InvalidArgumentError(f"invalid --exclude {options.exclude!r}: {exc}") from None
        self.on_event = on_event or (lambda event: None)
        self.on_progress = on_progress or (lambda forwarded, lag: None)
        self.should_stop = should_stop
        self.source: Source | None = None
        self.sink: Sink | None = None
        self.forwarded = 0
        self.dropped_loops = 0
        self._positions: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        self._routes: dict[str, str] = {}
        self._dest_partitions: dict[str, int] = {}
        self._pending: dict[TopicPartition, Position] = {}
        self._caught_up = False
        self._last_discovery = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: tuple[list[TopicWrite], Future[None]] | None = None

    # -- events ----------------------------------------------------------------------------

    def _event(self, event: str, text: str, **fields: Any) -> None:
        self.on_event(
            Event(event=event, mirror=self.name, time=int(time.time() * 1000), text=text, **fields)
        )

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; False when asked."""
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Open both ends, retrying while either is unreachable."""
        options = self.options
        attempt = 0
        while self.source is None or self.sink is None:
            try:
                if self.source is None:
                    self.source = self._make_source()
                if self.sink is None:
                    self.sink = self._make_sink(self.source)
            except RETRIABLE as exc:
                if attempt == 0:
                    self._event("unreachable", f"waiting: {exc.message}", error=exc.message)
                attempt += 1
                if not self._sleep(_backoff(attempt)):
                    return
        if attempt:
            self._event("resumed", "reachable again")
        self._event(
            "connected",
            f"mirror {self.name}: {self.source.shown} -> {self.sink.shown}",
            source=self.source.shown,
            destination=self.sink.shown,
            exactly_once=options.exactly_once,
        )

    def _make_source(self) -> Source:
        options = self.options
        if is_file(options.source):
            from pubsub.broker import Broker
            from pubsub.mirror.files import FileSource

            broker = Broker(
                options.source,
                sync=options.sync,  # type: ignore[arg-type]
                busy_timeout=options.busy_timeout,
                create=False,
            )
            return FileSource(broker, _shown(options.source))
        from pubsub.kafka.mirror import KafkaSource

        return KafkaSource(
            options.source,
            mirror=self.name,
            config_file=options.kafka_config_file,
            timeout=options.kafka_timeout,
            on_log=self._kafka_log,
        )

    def _make_sink(self, source: Source) -> Sink:
        options = self.options
        if is_file(options.destination):
            from pubsub.broker import Broker
            from pubsub.mirror.files import FileSink

            broker = Broker(
                options.destination,
                sync=options.sync,  # type: ignore[arg-type]
                busy_timeout=options.busy_timeout,
            )
            return FileSink(
                broker,
                _shown(options.destination),
                mirror=self.name,
                source_id=source.source_id,
                source=source.shown,
            )
        from pubsub.kafka.mirror import KafkaSink

        return KafkaSink(
            options.destination,
            mirror=self.name,
            source_id=source.source_id,
            source=source.shown,
            exactly_once=options.exactly_once,
            compression=options.compression,
            config_file=options.kafka_config_file,
            timeout=options.kafka_timeout,
            on_log=self._kafka_log,
        )

    def _kafka_log(self, line: str) -> None:
        self._event("kafka", line)

    # -- topics ----------------------------------------------------------------------------

    def _wanted(self, topic: str) -> bool:
        if self._exclude is not None and self._exclude.search(topic):
            return False
        if not self._selection:
            return True
        return any(
            s.search(topic) is not None if isinstance(s, re.Pattern) else s == topic
            for s in self._selection
        )

    def _dest_name(self, topic: str) -> str:
        return self.options.prefix + self.options.rename.get(topic, topic)

    def _discover(self, positions: dict[TopicPartition, int]) -> None:
        """Route every selected source topic not routed yet; assign its partitions."""
        assert self.source is not None and self.sink is not None
        source = self.source
        names = source.topics()
        missing = [t for t in self.options.topics if not t.startswith("^") and t not in names]
        if missing and not self._routes:
            raise TopicNotFoundError(missing[0])
        new: dict[TopicPartition, int | None] = {}
        for topic in names:
            if topic in self._routes or not self._wanted(topic):
                continue
            spec = source.spec(topic)
            dest = self._dest_name(topic)
            if dest == topic and self.options.source == self.options.destination:
                raise InvalidArgumentError(
                    f"topic {topic!r} would be mirrored onto itself",
                    hint="use --prefix or --rename for a mirror within one file",
                )
            self._dest_partitions[dest] = self._prepare_dest(spec, dest)
            self._routes[topic] = dest
            for partition in range(spec.partitions):
                tp = TopicPartition(topic, partition)
                new[tp] = positions.get(tp)
        if new:
            for start in source.assign(new):
                tp = TopicPartition(start.topic, start.partition)
                if start.skipped:
                    self._report_gap(start)
                    self._note_position(start)
                self._positions[tp] = start.next_offset
            self._ends.update(source.ends())
        self._last_discovery = time.monotonic()

    def _prepare_dest(self, spec: TopicSpec, dest: str) -> int:
        assert self.sink is not None
        count = self.sink.topic_partitions(dest)
        if count is None:
            if not self.options.create:
                raise TopicNotFoundError(dest)
            self.sink.create_topic(TopicSpec(dest, spec.partitions, spec.config))
            self._event(
                "created",
                f"created {dest} at the destination ({spec.partitions} partitions)",
                topic=dest,
                partitions=spec.partitions,
            )
            return spec.partitions
        if count != spec.partitions and not self.options.repartition:
            raise InvalidArgumentError(
                f"topic {spec.name!r} has {spec.partitions} partitions at the source but "
                f"{dest!r} has {count} at the destination",
                hint="give --repartition to route records by key (murmur2), or make the "
                "partition counts equal",
            )
        return count

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Forward until caught up (``once``) or until asked to stop; returns the number of
        records forwarded. Raises PubsubError for what retrying cannot fix."""
        try:
            self._open()
            if self.source is None or self.sink is None:
                return 0
            positions = self._with_retry(self.sink.load_positions, "reading positions")
            if positions is None:
                return 0
            self._discover(positions)
            stops = dict(self._ends) if self.options.once else None
            self._loop(stops)
            return self.forwarded
        finally:
            self.close()

    def _loop(self, stops: dict[TopicPartition, int] | None) -> None:
        # A Kafka source reports the end of a partition a moment after its last record.
        self._follow(stops, 0.25 if stops is None else 0.1)
        self._settle()  # the batch in flight commits before the mirror stops

    def _follow(self, stops: dict[TopicPartition, int] | None, timeout: float) -> None:
        assert self.source is not None
        source = self.source
        options = self.options
        while not self.should_stop():
            if stops is not None and self._reached(stops):
                self._flush_positions()  # settles the batch in flight first
                self._caught_up_event()
                return
            if stops is None and time.monotonic() - self._last_discovery > DISCOVER_SECONDS:
                self._with_retry(lambda: self._discover(self._positions_known()), "topics")
            chunks = self._with_retry(
                lambda: source.poll(timeout, options.max_batch_records, options.max_batch_bytes),
                "reading the source",
            )
            if chunks is None:
                return
            if chunks:
                self._caught_up = False
                if not self._deliver(chunks):
                    return
            elif stops is None and not self._caught_up:
                self._flush_positions()
                ends = self._with_retry(source.ends, "reading the source's ends")
                if ends is not None:
                    self._ends.update(ends)
                    if self._reached(self._ends):
                        self._caught_up_event()

    def _positions_known(self) -> dict[TopicPartition, int]:
        return {tp: p for tp, p in self._positions.items() if p >= 0}

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self._positions.get(tp, -1) >= end for tp, end in ends.items())

    def _caught_up_event(self) -> None:
        if not self._caught_up:
            self._caught_up = True
            self._event(
                "caught_up",
                f"caught up ({self.forwarded} records forwarded)",
                forwarded=self.forwarded,
            )

    def _with_retry(self, call: Callable[[], Any], what: str) -> Any:
        attempt = 0
        while True:
            try:
                result = call()
            except RETRIABLE as exc:
                if attempt == 0:
                    self._event(
                        "unreachable", f"{what}: {exc.message}; retrying", error=exc.message
                    )
                attempt += 1
                if not self._sleep(_backoff(attempt)):
                    return None
                continue
            if attempt:
                self._event("resumed", f"{what}: resumed after {attempt} retries")
            return result

    # -- one batch -------------------------------------------------------------------------

    def _report_gap(self, chunk: Chunk) -> None:
        if chunk.skipped:
            first = chunk.next_offset - chunk.skipped
            self._event(
                "gap",
                f"{chunk.topic}[{chunk.partition}]: offsets {first} to {chunk.next_offset - 1} "
                "were deleted at the source before they were forwarded",
                topic=chunk.topic,
                partition=chunk.partition,
                first=first,
                count=chunk.skipped,
            )

    def _note_position(self, chunk: Chunk) -> None:
        tp = TopicPartition(chunk.topic, chunk.partition)
        old = self._pending.get(tp)
        skipped = chunk.skipped + (old.skipped if old is not None else 0)
        self._pending[tp] = Position(
            chunk.topic, chunk.partition, chunk.next_offset, chunk.end, skipped
        )
        self._positions[tp] = chunk.next_offset
        self._ends[tp] = max(chunk.end, self._ends.get(tp, 0))

    def _part(self, chunk: Chunk) -> Part:
        """The chunk's records as the destination gets them: with their origin header,
        routed, without the records that came from the destination (a loop)."""
        assert self.source is not None and self.sink is not None
        origin = f"{self.source.source_id}/{chunk.topic}/{chunk.partition}/"
        offsets, timestamps, keys, values = (
            chunk.offsets,
            chunk.timestamps,
            chunk.keys,
            chunk.values,
        )
        headers: list[tuple[Header, ...] | None] | None = None
        if chunk.headers is not None:
            loop_prefix = self.sink.dest_id.encode() + b"/"
            add = self.options.origin
            origin_b = origin.encode()
            headers = []
            kept: list[int] = []
            for index, (offset, given) in enumerate(zip(offsets, chunk.headers, strict=True)):
                found = _origin_of(given) if given else None
                if found is not None:
                    if found.startswith(loop_prefix):
                        self.dropped_loops += 1
                        continue
                    final = given
                elif add:
                    extra = (ORIGIN_HEADER, origin_b + str(offset).encode())
                    final = (*given, extra) if given else (extra,)
                else:
                    final = given or None
                kept.append(index)
                headers.append(final)
            if len(kept) < len(offsets):
                offsets = [offsets[i] for i in kept]
                timestamps = [timestamps[i] for i in kept]
                keys = [keys[i] for i in kept]
                values = [values[i] for i in kept]
        partitions = None
        if self.options.repartition:
            route = self._route_of(chunk)
            partitions = [route(key) for key in keys]
        return Part(
            chunk.partition,
            partitions,
            offsets,
            timestamps,
            keys,
            values,
            headers,
            origin if self.options.origin else None,
        )

    def _route_of(self, chunk: Chunk) -> Callable[[bytes | None], int]:
        """Where ``--repartition`` sends a record: murmur2 of its key, or (keyless) the
        source partition modulo the destination's count."""
        count = self._dest_partitions[self._routes[chunk.topic]]
        keyless = chunk.partition % count
        return lambda key: partition_for_key(key, count) if key is not None else keyless

    def _deliver(self, chunks: list[Chunk]) -> bool:
        assert self.sink is not None
        by_topic: dict[str, TopicWrite] = {}
        for chunk in chunks:
            self._report_gap(chunk)
            dest = self._routes[chunk.topic]
            write = by_topic.get(dest)
            if write is None:
                write = by_topic[dest] = TopicWrite(dest, [], [])
            if chunk.offsets:
                write.parts.append(self._part(chunk))
            self._note_position(chunk)
        pending, self._pending = self._pending, {}
        for tp, position in pending.items():
            by_topic[self._routes[tp.topic]].positions.append(position)
        writes = list(by_topic.values())
        # The batch before this one may still be committing (read while it did): it is
        # settled first, so that transactions follow one another in order.
        if not self._settle():
            return False
        return self._commit(writes, overlap=True)

    def _commit(self, writes: list[TopicWrite], *, overlap: bool = False) -> bool:
        """Commit ``writes`` at the destination, retrying until it does (False: asked to
        stop meanwhile). With ``overlap``, a sink that can finish a commit in the background
        (a Kafka transaction) is left committing: :meth:`_settle` waits for it."""
        assert self.sink is not None
        begin = getattr(self.sink, "write_begin", None) if overlap else None
        if begin is not None and writes:
            try:
                finish = begin(writes)
            except FencedError:
                raise
            except RETRIABLE as exc:
                return self._retry(writes, exc)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pubsub-mirror-commit")
            self._in_flight = (writes, self._executor.submit(finish))
            return True
        sink = self.sink
        return self._outcome(writes, lambda: sink.write(writes) if writes else None)

    def _settle(self) -> bool:
        """Wait for the commit left in flight, if any; on its failure write that batch again
        (trimmed to what the destination lacks). False: asked to stop meanwhile."""
        if self._in_flight is None:
            return True
        writes, future = self._in_flight
        self._in_flight = None
        return self._outcome(writes, future.result)

    def _outcome(self, writes: list[TopicWrite], commit: Callable[[], object]) -> bool:
        """Run a batch's commit: on success count it forwarded, on a retriable failure write
        it again (a fenced mirror stops)."""
        try:
            commit()
        except FencedError:
            raise
        except RETRIABLE as exc:
            return self._retry(writes, exc)
        self._committed(writes)
        return True

    def _retry(self, writes: list[TopicWrite], exc: PubsubError) -> bool:
        assert self.sink is not None
        if isinstance(exc, StorageFullError):
            event, what = "destination_full", "destination full"
        else:
            event, what = "destination_unreachable", "destination unreachable"
        self._event(event, f"{what}: {exc.message}; retrying", error=exc.message)
        attempt = 1
        while True:
            if not self._sleep(_backoff(attempt)):
                return False
            try:
                # The failure may have hidden a commit: write only what the positions
                # committed at the destination say is missing.
                writes = _trim(writes, self.sink.recover())
                if writes:
                    self.sink.write(writes)
                break
            except FencedError:
                raise
            except RETRIABLE:
                attempt += 1
        self._event("resumed", f"destination reachable again after {attempt} retries")
        self._committed(writes)
        return True

    def _committed(self, writes: list[TopicWrite]) -> None:
        """What follows a commit: counts, the source's record of progress, the callback."""
        count = sum(len(p.offsets) for w in writes for p in w.parts)
        self.forwarded += count
        positions = [p for w in writes for p in w.positions]
        self._progress(positions, "following" if not self.options.once else "running")
        lag = sum(max(0, self._ends.get(tp, 0) - p) for tp, p in self._positions.items())
        self.on_progress(self.forwarded, lag)

    def _progress(self, positions: Sequence[Position], state: str) -> None:
        source = self.source
        if positions and _is_file_source(source):
            try:
                source.record_progress(self.name, self.sink.shown, positions, state)  # type: ignore[union-attr]
            except RETRIABLE as exc:
                self._event("progress_not_recorded", f"source progress not recorded: {exc.message}")

    def _flush_positions(self) -> None:
        """Commit positions that moved without records (transaction markers, a gap)."""
        if not self._settle() or not self._pending or self.sink is None:
            return
        by_topic: dict[str, TopicWrite] = {}
        for tp, position in self._pending.items():
            dest = self._routes[tp.topic]
            by_topic.setdefault(dest, TopicWrite(dest, [], [])).positions.append(position)
        self._pending = {}
        self._commit(list(by_topic.values()))

    def _record_state(self, state: str) -> None:
        source = self.source
        if _is_file_source(source):
            with contextlib.suppress(*RETRIABLE):
                source.record_state(self.name, state)  # type: ignore[union-attr]

    def close(self) -> None:
        """Record that the mirror stopped and close both ends. Idempotent."""
        if self._in_flight is not None:
            # Failed or not, the commit ends before the ends close (a restart reads the
            # positions the destination has).
            with contextlib.suppress(Exception):
                self._in_flight[1].result()
            self._in_flight = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        if self.source is not None and self.sink is not None:
            self._record_state("stopped")
        for end in (self.source, self.sink):
            if end is not None:
                with contextlib.suppress(PubsubError):
                    end.close()
        self.source = None
        self.sink = None


def _is_file_source(source: object) -> bool:
    from pubsub.mirror.files import FileSource

    return isinstance(source, FileSource)


def _trim(writes: list[TopicWrite], committed: dict[TopicPartition, int]) -> list[TopicWrite]:
    """The part of ``writes`` the destination has not committed: a failure may hide a commit
    (an answer lost after the commit); what it committed is not written twice."""
    done = {
        (p.topic, p.partition)
        for w in writes
        for p in w.positions
        if committed.get(TopicPartition(p.topic, p.partition), -1) >= p.next_offset
    }
    if not done:
        return writes
    # A batch commits as a whole per transaction: a write whose positions are all committed
    # went through; any other did not.
    return [
        w
        for w in writes
        if not w.positions or not all((p.topic, p.partition) in done for p in w.positions)
    ]
