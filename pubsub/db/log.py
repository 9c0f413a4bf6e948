"""SQL for the log: appending records, reading ranges, offsets and the time index.

One rowid table per partition, ``log_<topic_id>_<partition>``:
``"offset" INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, key BLOB, value BLOB, headers TEXT``.
Appends land on the right edge of one B-tree; a range read is a rowid range scan.

Storage moves opaque values: keys and values are bytes, headers are the text the API encoded.
Functions take a connection and never begin or commit; appends must run inside a write
transaction that also read the partition's counter (:func:`partition_get`).
"""

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain, count, islice, repeat
from typing import Any, NamedTuple

#: Columns of a row :func:`records_list_by_range` returns: offset, timestamp, key, value,
#: headers.
RecordRow = tuple[int, int, bytes | None, bytes | None, str | None]
#: Columns of a row :func:`values_list_by_range` returns: offset, value.
ValueRow = tuple[int, bytes | None]


def log_table(topic_id: int, partition: int) -> str:
    """The name of a partition's log table, built from integers only."""
    return f"log_{int(topic_id)}_{int(partition)}"


class AppendState(NamedTuple):
    """What an append needs to know, read under the write lock."""

    config_version: int
    next_offset: int
    max_timestamp: int


def partition_get(conn: sqlite3.Connection, topic_id: int, partition: int) -> AppendState | None:
    """The topic's config version and the partition's counter; None if either is gone."""
    row = conn.execute(
        "SELECT t.config_version, p.next_offset, p.max_timestamp "
        "FROM partitions AS p JOIN topics AS t ON t.topic_id = p.topic_id "
        "WHERE p.topic_id = ? AND p.partition = ?",
        (topic_id, partition),
    ).fetchone()
    return AppendState(*row) if row is not None else None


def records_append(
    conn: sqlite3.Connection,
    topic_id: int,
    partition: int,
    state: AppendState,
    *,
    values: Sequence[bytes | None],
    keys: Iterable[bytes | None] | None,
    headers: Iterable[str | None] | None,
    timestamps: Sequence[int] | None,
    now_ms: int,
    byte_count: int,
) -> int:
    """Append records at ``state.next_offset`` onwards and advance the counter.

    ``keys``/``headers`` may be None (all null); ``timestamps`` None means every record gets
    ``now_ms``. Returns the base offset. The counter, record count, byte count and running
    maximum timestamp are updated in the same transaction as the insert.
    """
    n = len(values)
    base = state.next_offset
    table = log_table(topic_id, partition)
    running = state.max_timestamp
    index_rows: list[tuple[int, int, int, int]] = []
    ts_column: Iterable[int]
    if timestamps is None:
        ts_column = repeat(now_ms, n)
        if now_ms > running:
            index_rows.append((topic_id, partition, now_ms, base))
            running = now_ms
    else:
        ts_column = timestamps
        for position, ts in enumerate(timestamps):
            if ts > running:
                running = ts
                index_rows.append((topic_id, partition, ts, base + position))
    names = ["timestamp", "value"]
    columns: list[Iterable[Any]] = [ts_column, values]
    if keys is not None:
        names.append("key")
        columns.append(keys)
    if headers is not None:
        names.append("headers")
        columns.append(headers)
    _rows_insert(conn, table, base, n, names, columns)
    if index_rows:
        conn.executemany(
            'INSERT INTO time_index (topic_id, partition, timestamp, "offset") VALUES (?, ?, ?, ?)',
            index_rows,
        )
    conn.execute(
        "UPDATE partitions SET next_offset = ?, max_timestamp = ?, "
        "record_count = record_count + ?, byte_count = byte_count + ? "
        "WHERE topic_id = ? AND partition = ?",
        (base + n, running, n, byte_count, topic_id, partition),
    )
    return base


#: Rows per multi-row INSERT: one statement step for this many rows costs about half what
#: as many single-row steps do (binding, stepping and resetting a statement per row).
_ROWS_PER_INSERT = 256


def _rows_insert(
    conn: sqlite3.Connection,
    table: str,
    base: int,
    n: int,
    names: list[str],
    columns: list[Iterable[Any]],
) -> None:
    """Insert ``n`` rows at offsets ``base`` onwards; ``columns`` hold the values of the
    columns ``names`` (a column left out stays NULL: no parameter bound for it)."""
    width = len(names) + 1
    per = min(_ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    head = f'INSERT INTO {table} ("offset", {", ".join(names)}) VALUES '
    one = "(" + ", ".join("?" * width) + ")"
    rows: Iterable[Any] = zip(count(base), *columns, strict=False)
    if n < per:
        conn.executemany(head + one, rows)
        return
    flat = list(chain.from_iterable(islice(rows, n)))
    statement = head + ", ".join([one] * per)
    step = per * width
    full = (n // per) * step
    for start in range(0, full, step):
        conn.execute(statement, flat[start : start + step])
    if full < len(flat):
        rest = flat[full:]
        conn.executemany(head + one, [rest[i : i + width] for i in range(0, len(rest), width)])


def record_append(
    conn: sqlite3.Connection,
    topic_id: int,
    partition: int,
    state: AppendState,
    key: bytes | None,
    value: bytes | None,
    headers: str | None,
    timestamp: int,
    size: int,
) -> int:
    """:func:`records_append` for a single record (fewer steps); returns its offset."""
    offset = state.next_offset
    conn.execute(
        f'INSERT INTO {log_table(topic_id, partition)} ("offset", timestamp, key, value, headers) '
        "VALUES (?, ?, ?, ?, ?)",
        (offset, timestamp, key, value, headers),
    )
    running = state.max_timestamp
    if timestamp > running:
        running = timestamp
        conn.execute(
            'INSERT INTO time_index (topic_id, partition, timestamp, "offset") VALUES (?, ?, ?, ?)',
            (topic_id, partition, timestamp, offset),
        )
    conn.execute(
        "UPDATE partitions SET next_offset = ?, max_timestamp = ?, "
        "record_count = record_count + 1, byte_count = byte_count + ? "
        "WHERE topic_id = ? AND partition = ?",
        (offset + 1, running, size, topic_id, partition),
    )
    return offset


def records_list_by_range(
    conn: sqlite3.Connection, topic_id: int, partition: int, offset: int, end: int, limit: int
) -> list[RecordRow]:
    """Records with ``offset <= o < end``, oldest first, at most ``limit``."""
    return conn.execute(
        f'SELECT "offset", timestamp, key, value, headers '
        f"FROM {log_table(topic_id, partition)} "
        f'WHERE "offset" >= ? AND "offset" < ? ORDER BY "offset" LIMIT ?',
        (offset, end, limit),
    ).fetchall()


def values_list_by_range(
    conn: sqlite3.Connection, topic_id: int, partition: int, offset: int, end: int, limit: int
) -> list[ValueRow]:
    """:func:`records_list_by_range` selecting only the offset and the value (raw output
    needs no more). Fetching two columns instead of five roughly halves the cost per row."""
    return conn.execute(
        f'SELECT "offset", value FROM {log_table(topic_id, partition)} '
        f'WHERE "offset" >= ? AND "offset" < ? ORDER BY "offset" LIMIT ?',
        (offset, end, limit),
    ).fetchall()


def time_index_find_by_timestamp(
    conn: sqlite3.Connection, topic_id: int, partition: int, timestamp: int, log_start: int
) -> int | None:
    """The earliest stored offset whose timestamp is >= ``timestamp``, or None.

    The time index row found is the offset where the running maximum first reached
    ``timestamp``: every earlier record is older. From there (or from the log start, if that
    record was deleted) the first record at least as new is the answer; with in-order
    timestamps that is the first row read.
    """
    row = conn.execute(
        'SELECT "offset" FROM time_index WHERE topic_id = ? AND partition = ? '
        "AND timestamp >= ? ORDER BY timestamp LIMIT 1",
        (topic_id, partition, timestamp),
    ).fetchone()
    if row is None:
        return None
    start = max(int(row[0]), log_start)
    found = conn.execute(
        f'SELECT "offset" FROM {log_table(topic_id, partition)} '
        'WHERE "offset" >= ? AND timestamp >= ? ORDER BY "offset" LIMIT 1',
        (start, timestamp),
    ).fetchone()
    return int(found[0]) if found is not None else None


def time_index_count(conn: sqlite3.Connection, topic_id: int, partition: int, offset: int) -> int:
    """How many time-index entries of a partition point at ``offset`` or later."""
    row = conn.execute(
        'SELECT count(*) FROM time_index WHERE topic_id = ? AND partition = ? AND "offset" >= ?',
        (topic_id, partition, offset),
    ).fetchone()
    return int(row[0])


def records_peek(conn: sqlite3.Connection, topic_id: int, partition: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the oldest stored record, or None if the partition is empty."""
    row = conn.execute(
        f'SELECT "offset", timestamp FROM {log_table(topic_id, partition)} '
        'ORDER BY "offset" LIMIT 1'
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))
