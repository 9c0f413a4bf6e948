"""SQL for producer state: producer ids, and the batches producers have already written.

``producer_state`` has one row per batch a producer wrote, inserted in the transaction that
appended the batch's records (see ``migrations/0005_producer_state.sql``). Its ``producer``
column names the producer: ``kafka:<producer id>`` for a Kafka idempotent producer (its
last batches per partition), ``id:<record id>`` for a record produced with an id. Functions
take a connection and never begin or commit; they run inside a write transaction.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

__all__ = [
    "KAFKA_BATCHES_KEPT",
    "BatchRow",
    "kafka_producer",
    "producer_ids_take",
    "producer_state_delete_by_producer",
    "producer_state_delete_by_sequence",
    "producer_state_expire",
    "producer_state_find_by_id",
    "producer_state_insert",
    "producer_state_list_by_partition",
    "producer_state_prune_by_time",
    "record_producer",
]

#: Batches kept per Kafka producer and partition, as Kafka's ProducerStateEntry keeps.
KAFKA_BATCHES_KEPT = 5

_KAFKA_PREFIX = "kafka:"
_ID_PREFIX = "id:"
#: The first string after every ``id:…`` (``;`` follows ``:``): a range bound for the prefix.
_ID_END = "id;"
_KAFKA_END = "kafka;"


def kafka_producer(producer_id: int) -> str:
    """The ``producer`` value of a Kafka producer id."""
    return f"{_KAFKA_PREFIX}{int(producer_id)}"


def record_producer(record_id: str) -> str:
    """The ``producer`` value of a record id."""
    return _ID_PREFIX + record_id


class BatchRow(NamedTuple):
    """A batch a producer wrote to one partition."""

    partition: int
    first_sequence: int
    last_sequence: int
    epoch: int
    base_offset: int
    record_timestamp: int
    written_ms: int


_BATCH_COLUMNS = (
    "partition, first_sequence, last_sequence, epoch, base_offset, record_timestamp, written_ms"
)


def producer_ids_take(conn: sqlite3.Connection) -> int:
    """A producer id never handed out before: the counter's value, which moves on by one."""
    row = conn.execute("SELECT next_producer_id FROM producer_ids WHERE singleton = 0").fetchone()
    conn.execute(
        "UPDATE producer_ids SET next_producer_id = next_producer_id + 1 WHERE singleton = 0"
    )
    return int(row[0])


def producer_state_list_by_partition(
    conn: sqlite3.Connection, topic_id: int, producer: str, partition: int
) -> list[BatchRow]:
    """The batches ``producer`` wrote to a partition that are still kept, oldest first."""
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM producer_state "
        "WHERE topic_id = ? AND producer = ? AND partition = ? ORDER BY base_offset",
        (topic_id, producer, partition),
    ).fetchall()
    return [BatchRow(*row) for row in rows]


def producer_state_find_by_id(
    conn: sqlite3.Connection, topic_id: int, producer: str, since_ms: int
) -> BatchRow | None:
    """The record stored under a record id at ``since_ms`` or later, or None."""
    row = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM producer_state "
        "WHERE topic_id = ? AND producer = ? AND written_ms >= ? ORDER BY written_ms DESC LIMIT 1",
        (topic_id, producer, since_ms),
    ).fetchone()
    return BatchRow(*row) if row is not None else None


def producer_state_insert(
    conn: sqlite3.Connection, topic_id: int, producer: str, batch: BatchRow
) -> None:
    """Record a batch ``producer`` wrote (an id written again replaces its old row)."""
    conn.execute(
        "INSERT OR REPLACE INTO producer_state (topic_id, producer, "
        f"{_BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (topic_id, producer, *batch),
    )


def producer_state_delete_by_sequence(
    conn: sqlite3.Connection, topic_id: int, producer: str, partition: int, first_sequence: int
) -> None:
    """Forget one batch (the oldest, when a producer has written more than are kept)."""
    conn.execute(
        "DELETE FROM producer_state "
        "WHERE topic_id = ? AND producer = ? AND partition = ? AND first_sequence = ?",
        (topic_id, producer, partition, first_sequence),
    )


def producer_state_delete_by_producer(
    conn: sqlite3.Connection, topic_id: int, producer: str, partition: int
) -> None:
    """Forget every batch of a producer on a partition (its epoch changed)."""
    conn.execute(
        "DELETE FROM producer_state WHERE topic_id = ? AND producer = ? AND partition = ?",
        (topic_id, producer, partition),
    )


def producer_state_prune_by_time(
    conn: sqlite3.Connection, topic_id: int, before_ms: int, *, kafka: bool
) -> int:
    """Delete a topic's rows written before ``before_ms``: those of Kafka producers when
    ``kafka``, else those of record ids. Returns how many.

    A range of the ``(topic_id, written_ms)`` index: only expired rows are visited.
    """
    low, high = (_KAFKA_PREFIX, _KAFKA_END) if kafka else (_ID_PREFIX, _ID_END)
    return conn.execute(
        "DELETE FROM producer_state WHERE topic_id = ? AND written_ms < ? "
        "AND producer >= ? AND producer < ?",
        (topic_id, before_ms, low, high),
    ).rowcount


def producer_state_expire(
    conn: sqlite3.Connection, now_ms: int, default_window_ms: int, kafka_expiration_ms: int
) -> int:
    """Delete, across every topic, record-id rows past their topic's ``dedup.window.ms``
    (``default_window_ms`` where unset) and Kafka producer batches written more than
    ``kafka_expiration_ms`` ago (a retention sweep calls this). Returns how many. Looks
    first, so that a sweep with nothing expired deletes nothing."""
    expired_ids = (
        "producer >= ? AND producer < ? AND written_ms < ? - "
        "coalesce((SELECT CAST(c.value AS INTEGER) FROM topic_configs AS c "
        "WHERE c.topic_id = producer_state.topic_id AND c.key = 'dedup.window.ms'), ?)"
    )
    expired_kafka = "producer >= ? AND producer < ? AND written_ms < ?"
    deleted = 0
    for where, args in (
        (expired_ids, (_ID_PREFIX, _ID_END, now_ms, default_window_ms)),
        (expired_kafka, (_KAFKA_PREFIX, _KAFKA_END, now_ms - kafka_expiration_ms)),
    ):
        found = conn.execute(f"SELECT 1 FROM producer_state WHERE {where} LIMIT 1", args)
        if found.fetchone() is not None:
            deleted += conn.execute(f"DELETE FROM producer_state WHERE {where}", args).rowcount
    return deleted
