"""A database file as a mirror's source or destination.

As a source, the file is read by offset ranges and a :class:`~pubsub.db.notify.ChangeWaiter`
wakes the mirror within milliseconds of a commit by another process. The mirror's progress is
kept in the source's ``mirror_progress`` table as well (after the destination committed), for
``pubsub mirror status`` and for ``retention.hold.mirrors``.

As a destination, each topic's records are appended in one ``BEGIN IMMEDIATE`` transaction
together with the source positions they reach (``mirror_positions``): a mirror killed at any
point resumes from exactly what was committed.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from functools import partial

from pubsub.broker import Broker
from pubsub.config import effective_config
from pubsub.db import mirrors as sql
from pubsub.db.notify import ChangeWaiter
from pubsub.errors import InvalidArgumentError, TopicNotFoundError
from pubsub.mirror.model import (
    COPIED_CONFIG,
    ORIGIN_HEADER,
    Chunk,
    Part,
    Position,
    TopicSpec,
    TopicWrite,
    empty_chunk,
    start_positions,
)
from pubsub.records import Header, TopicPartition, decode_headers, encode_headers
from pubsub.writer import Columns

__all__ = ["FileSink", "FileSource", "file_id"]

#: An origin header value that needs no escaping in JSON (ids, topic names, numbers).
_PLAIN_ORIGIN = re.compile(rb"[A-Za-z0-9._/+=-]*\Z")
_ORIGIN_ONLY = f'[["{ORIGIN_HEADER}","'


def _encode(headers: tuple[Header, ...] | None) -> str | None:
    """Headers as stored; the common case (the origin header alone) without json.dumps."""
    if headers is None:
        return None
    if len(headers) == 1:
        name, value = headers[0]
        if name == ORIGIN_HEADER and value is not None and _PLAIN_ORIGIN.match(value):
            return _ORIGIN_ONLY + value.decode("ascii") + '"]]'
    return encode_headers(headers)


def _columns(
    tp: TopicPartition,
    raw: list[tuple[int, int, bytes | None, bytes | None, str | None]],
    byte_budget: int,
    end: int,
    skipped: int,
    limit: int,
) -> tuple[Chunk, int]:
    """Stored rows as a chunk's columns (C-level: no object per record), cut after the
    record that reaches ``byte_budget``; with the chunk's bytes."""
    if not raw:
        return empty_chunk(tp.topic, tp.partition, end, end, skipped), 0
    offsets, timestamps, keys, values, stored = (list(c) for c in zip(*raw, strict=True))
    present = list(filter(None, stored))
    size = _total(values) + _total(keys) + sum(map(len, present))
    count = len(raw)
    if size > byte_budget and count > 1:
        size = 0
        for count, (_, _, key, value, stored_one) in enumerate(raw, 1):  # noqa: B007
            size += (len(key) if key else 0) + (len(value) if value else 0)
            size += len(stored_one) if stored_one else 0
            if size >= byte_budget:
                break
        del offsets[count:], timestamps[count:], keys[count:], values[count:], stored[count:]
    headers: list[tuple[Header, ...] | None] | None = None
    if present:
        headers = [decode_headers(h) if h is not None else None for h in stored]
    # read to the end: holes (compaction) are passed over
    next_offset = end if count == len(raw) and len(raw) < limit else offsets[-1] + 1
    chunk = Chunk(
        tp.topic,
        tp.partition,
        offsets,
        timestamps,
        keys,
        values,
        headers,
        next_offset,
        end,
        skipped,
    )
    return chunk, size


def _total(column: list[bytes | None]) -> int:
    return sum(map(len, filter(None, column)))


def file_id(broker: Broker) -> str:
    """The file's stable id (made by the schema's migration; a backup copy keeps it)."""
    with broker.store.read():
        return sql.identity_get(broker.store.connection)


class FileSource:
    """Reads the assigned partitions of a file from given offsets."""

    def __init__(self, broker: Broker, shown: str) -> None:
        self.broker = broker
        self.shown = shown
        self.source_id = file_id(broker)
        store = broker.store
        self._waiter = ChangeWaiter(lambda: store.connection, store.path)
        self._positions: dict[TopicPartition, int] = {}
        self._rotation = 0

    def topics(self) -> list[str]:
        return [info.name for info in self.broker.list_topics()]

    def spec(self, topic: str) -> TopicSpec:
        info = self.broker.describe_topic(topic)
        config = effective_config(dict(info.overrides))
        return TopicSpec(
            topic, info.partitions, {k: config[k] for k in COPIED_CONFIG if k in config}
        )

    def assign(self, positions: dict[TopicPartition, int | None]) -> list[Chunk]:
        starts, gaps = start_positions(positions, self.broker.watermarks, clamp_to_end=True)
        self._positions.update(starts)
        return gaps

    def ends(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for topic in dict.fromkeys(tp.topic for tp in self._positions):
            for partition, (_, end) in self.broker.watermarks(topic).items():
                tp = TopicPartition(topic, partition)
                if tp in self._positions:
                    out[tp] = end
        return out

    def poll(self, timeout: float, max_records: int, max_bytes: int) -> list[Chunk]:
        deadline = time.monotonic() + timeout
        while True:
            self._waiter.mark()
            chunks = self._read(max_records, max_bytes)
            if chunks:
                return chunks
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._waiter.wait(remaining)

    def _read(self, max_records: int, max_bytes: int) -> list[Chunk]:
        services = self.broker.services
        reader, topics = services.reader, services.topics
        assigned = list(self._positions)
        if not assigned:
            return []
        start_at = self._rotation % len(assigned)
        self._rotation += 1
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        chunks: list[Chunk] = []
        budget, byte_budget = max_records, max_bytes
        for index in range(len(assigned)):
            if budget <= 0 or byte_budget <= 0:
                break
            tp = assigned[(start_at + index) % len(assigned)]
            if tp.topic not in marks:
                marks[tp.topic] = reader.watermarks(tp.topic)
            start, end = marks[tp.topic][tp.partition]
            position = self._positions[tp]
            skipped = 0
            if position < start:  # retention deleted records before they were forwarded
                skipped = start - position
                position = start
            if position >= end:
                if skipped:
                    self._positions[tp] = position
                    chunks.append(empty_chunk(tp.topic, tp.partition, position, end, skipped))
                continue
            meta = topics.meta_for_partition(tp.topic, tp.partition)
            raw = reader.read_rows(meta, tp.partition, position, end, budget)
            chunk, size = _columns(tp, raw, byte_budget, end, skipped, budget)
            budget -= len(chunk.offsets)
            byte_budget -= size
            self._positions[tp] = chunk.next_offset
            chunks.append(chunk)
        return chunks

    def record_progress(
        self, mirror: str, destination: str, positions: Sequence[Position], state: str
    ) -> None:
        """Write the mirror's progress into the source file (after the destination
        committed: it never runs ahead of what was delivered)."""
        now = self.broker.now()
        topics = self.broker.services.topics
        rows = []
        for pos in positions:
            try:
                topic_id = topics.meta(pos.topic).topic_id
            except TopicNotFoundError:
                continue
            rows.append(
                (
                    mirror,
                    topic_id,
                    pos.partition,
                    destination,
                    pos.next_offset,
                    now,
                    pos.skipped,
                    state,
                    now,
                )
            )
        with self.broker.store.write() as conn:
            sql.mirror_progress_put(conn, rows)

    def record_state(self, mirror: str, state: str) -> None:
        """Set the state shown by ``mirror status`` for every partition of ``mirror``."""
        with self.broker.store.write() as conn:
            sql.mirror_progress_update(conn, mirror, state, self.broker.now())

    def close(self) -> None:
        self._waiter.close()


class FileSink:
    """Appends forwarded records to a file, each topic's with its positions in one
    transaction."""

    def __init__(
        self, broker: Broker, shown: str, *, mirror: str, source_id: str, source: str
    ) -> None:
        self.broker = broker
        self.shown = shown
        self.dest_id = file_id(broker)
        self.mirror = mirror
        self.source_id = source_id
        self.source = source

    def load_positions(self) -> dict[TopicPartition, int]:
        with self.broker.store.read():
            rows = sql.mirror_positions_list(self.broker.store.connection, self.mirror)
        for row in rows:
            if row.source_id != self.source_id:
                raise InvalidArgumentError(
                    f"mirror {self.mirror!r} in {self.shown} forwards from another source "
                    f"({row.source}, id {row.source_id})",
                    hint="give this mirror another --name",
                )
        return {TopicPartition(row.topic, row.partition): row.next_offset for row in rows}

    def recover(self) -> dict[TopicPartition, int]:
        return self.load_positions()

    def topic_partitions(self, topic: str) -> int | None:
        try:
            return self.broker.describe_topic(topic).partitions
        except TopicNotFoundError:
            return None

    def create_topic(self, spec: TopicSpec) -> None:
        config = {k: v for k, v in spec.config.items() if v != ""}
        self.broker.create_topic(spec.name, spec.partitions, config, if_not_exists=True)

    def write(self, writes: Sequence[TopicWrite]) -> None:
        writer = self.broker.services.writer
        for write in writes:
            writer.produce_columns(
                write.topic, _by_partition(write.parts), inside=partial(self._put, write.positions)
            )

    def _put(self, positions: Sequence[Position], conn: sqlite3.Connection) -> None:
        now = self.broker.now()
        sql.mirror_positions_put(
            conn,
            (
                sql.PositionRow(
                    self.mirror,
                    p.topic,
                    p.partition,
                    self.source_id,
                    self.source,
                    p.next_offset,
                    p.source_end,
                    p.skipped,
                    now,
                )
                for p in positions
            ),
        )

    def close(self) -> None:
        pass


def _stored_headers(part: Part) -> list[str | None] | None:
    """Each record's headers as stored: the origin header alone without json.dumps."""
    if part.headers is not None:
        return [_encode(h) for h in part.headers]
    if part.origin is None:
        return None
    if _PLAIN_ORIGIN.match(part.origin.encode()):
        head = _ORIGIN_ONLY + part.origin
        return [f'{head}{offset}"]]' for offset in part.offsets]
    origin = part.origin.encode()
    return [encode_headers([(ORIGIN_HEADER, origin + str(o).encode())]) for o in part.offsets]


def _by_partition(parts: Sequence[Part]) -> list[Columns]:
    """The parts' records as columns per destination partition (each partition once)."""
    parts = [p for p in parts if p.values]
    if all(p.partitions is None for p in parts) and len({p.partition for p in parts}) == len(parts):
        return [
            Columns(p.partition, p.values, p.keys, _stored_headers(p), p.timestamps) for p in parts
        ]
    merged: dict[int, Columns] = {}
    for part in parts:
        stored = _stored_headers(part)
        targets = part.partitions or [part.partition] * len(part.values)
        for index, target in enumerate(targets):
            columns = merged.get(target)
            if columns is None:
                columns = merged[target] = Columns(target, [], [], [], [])
            columns.values.append(part.values[index])
            columns.keys.append(part.keys[index])  # type: ignore[union-attr]
            columns.headers.append(None if stored is None else stored[index])  # type: ignore[union-attr]
            columns.timestamps.append(part.timestamps[index])  # type: ignore[union-attr]
    return list(merged.values())
