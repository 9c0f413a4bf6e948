"""The reader: fetch records, watermarks and time lookups for the topics of one store.

Reads run in autocommit mode, one statement each, so no read transaction pins the WAL.
:func:`to_records`, :func:`rows_bytes` and :func:`cut_to_bytes` turn stored rows into
:class:`~pubsub.records.Record` values in C-level loops: they are the consumer's hot path.
"""

from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from pubsub.db import catalog, log
from pubsub.db.store import Store
from pubsub.errors import (
    InvalidArgumentError,
    OffsetOutOfRangeError,
    TopicDeletedError,
    TopicNotFoundError,
)
from pubsub.records import Record
from pubsub.topics import TopicMeta, Topics

__all__ = ["Reader", "cut_to_bytes", "rows_bytes", "to_records"]

_new_record = tuple.__new__


class Reader:
    """Reads records and offsets of the topics of one store."""

    __slots__ = ("store", "topics")

    def __init__(self, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics

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
        meta = self.topics.meta_for_partition(topic, partition)
        with self.store.read():
            marks = catalog.partition_get(self.store.connection, meta.topic_id, partition)
            if marks is None:
                self.topics.forget(topic)
                raise TopicNotFoundError(topic)
            start, end = marks.log_start_offset, marks.next_offset
            if not start <= offset <= end:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is out of range for {topic}[{partition}]",
                    offset=offset,
                    log_start_offset=start,
                    next_offset=end,
                )
        rows = self.read_rows(meta, partition, offset, end, max_records)
        if max_bytes is not None:
            rows = cut_to_bytes(rows, max_bytes)
        return to_records(meta.name, partition, rows)

    def read_rows(
        self, meta: TopicMeta, partition: int, offset: int, end: int, limit: int
    ) -> list[log.RecordRow]:
        """Rows of ``[offset, end)``; a topic deleted meanwhile is reported as not found."""
        try:
            with self.store.read():
                return log.records_list_by_range(
                    self.store.connection, meta.topic_id, partition, offset, end, limit
                )
        except TopicDeletedError:
            self.topics.forget(meta.name)
            raise TopicNotFoundError(meta.name) from None

    def read_value_rows(
        self, meta: TopicMeta, partition: int, offset: int, end: int, limit: int
    ) -> list[log.ValueRow]:
        """:meth:`read_rows` with only (offset, value) of each row (raw output's fast path)."""
        try:
            with self.store.read():
                return log.values_list_by_range(
                    self.store.connection, meta.topic_id, partition, offset, end, limit
                )
        except TopicDeletedError:
            self.topics.forget(meta.name)
            raise TopicNotFoundError(meta.name) from None

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (log start offset, next offset)."""
        for _attempt in range(2):
            meta = self.topics.meta(topic)
            with self.store.read():
                marks = catalog.partitions_get(self.store.connection, meta.topic_id)
            if marks:
                return {m.partition: (m.log_start_offset, m.next_offset) for m in marks}
            self.topics.forget(topic)  # deleted, or deleted and created again: look once more
        raise TopicNotFoundError(topic)

    def extents(self, topic: str) -> tuple[TopicMeta, dict[int, tuple[int, int, int]]]:
        """The topic's metadata and, per partition, (log start offset, next offset, records
        stored), read together under that metadata's topic id.

        Records stored equal to next minus start means no offset in between was deleted
        (compaction leaves holes; offsets are never reused): what a cache of encoded ranges
        checks before it serves one.
        """
        for _attempt in range(2):
            meta = self.topics.meta(topic)
            with self.store.read():
                marks = catalog.partitions_get(self.store.connection, meta.topic_id)
            if marks:
                return meta, {
                    m.partition: (m.log_start_offset, m.next_offset, m.record_count) for m in marks
                }
            self.topics.forget(topic)  # deleted, or deleted and created again: look once more
        raise TopicNotFoundError(topic)

    def settled_watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """:meth:`watermarks` read while holding the write lock (a transaction that writes
        nothing, so nothing is synced to disk).

        No append is in progress then, and appends stamp their records under the same lock:
        a record appended after this call has a timestamp from after it (unless its producer
        set one). ``consume -f --until @TIME`` uses this to end a partition that stays quiet.
        """
        meta = self.topics.meta(topic)
        with self.store.write() as conn:
            marks = catalog.partitions_get(conn, meta.topic_id)
        if not marks:
            self.topics.forget(topic)
            raise TopicNotFoundError(topic)
        return {m.partition: (m.log_start_offset, m.next_offset) for m in marks}

    def earliest_offset(self, topic: str, partition: int) -> int:
        """The first offset still stored (Kafka's log start offset)."""
        return self.partition_marks(topic, partition)[0]

    def latest_offset(self, topic: str, partition: int) -> int:
        """The offset the next record will get (Kafka's log end offset / high watermark)."""
        return self.partition_marks(topic, partition)[1]

    def partition_marks(self, topic: str, partition: int) -> tuple[int, int]:
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
        meta = self.topics.meta_for_partition(topic, partition)
        start, _ = self.partition_marks(topic, partition)
        with self.store.read():
            return log.time_index_find_by_timestamp(
                self.store.connection, meta.topic_id, partition, timestamp, start
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
