"""pubsub.db.log: appends, range reads, watermarks and the time index, on a real file."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import catalog, log
from pubsub.db.connection import connect
from pubsub.db.transaction import WriteTransaction


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a database with topic ``t`` of two partitions."""
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
    c = connect(str(db_path))
    try:
        yield c
    finally:
        c.close()


def topic_id(conn: sqlite3.Connection) -> int:
    row = catalog.topic_get_by_name(conn, "t")
    assert row is not None
    return row.topic_id


def append(
    conn: sqlite3.Connection,
    partition: int,
    values: list[bytes | None],
    *,
    timestamps: list[int] | None = None,
    now_ms: int = 1_000,
    keys: list[bytes | None] | None = None,
    headers: list[str | None] | None = None,
) -> int:
    tid = topic_id(conn)
    with WriteTransaction(conn, 1.0):
        state = log.partition_get(conn, tid, partition)
        assert state is not None
        size = sum(len(v or b"") for v in values)
        return log.records_append(
            conn,
            tid,
            partition,
            state,
            values=values,
            keys=keys,
            headers=headers,
            timestamps=timestamps,
            now_ms=now_ms,
            byte_count=size,
        )


def index_rows(conn: sqlite3.Connection, partition: int) -> list[tuple[int, int]]:
    return conn.execute(
        'SELECT timestamp, "offset" FROM time_index WHERE topic_id = ? AND partition = ? '
        'ORDER BY "offset"',
        (topic_id(conn), partition),
    ).fetchall()


def test_log_table_names_are_built_from_integers_only() -> None:
    assert log.log_table(3, 0) == "log_3_0"
    assert log.log_table(True, 7) == "log_1_7"
    with pytest.raises(ValueError):
        log.log_table("1; DROP TABLE topics", 0)  # type: ignore[arg-type]


def test_append_state_of_a_new_and_of_a_missing_partition(conn: sqlite3.Connection) -> None:
    state = log.partition_get(conn, topic_id(conn), 1)
    assert state is not None
    assert (state.next_offset, state.max_timestamp) == (0, -1)
    assert state.config_version >= 0
    assert log.partition_get(conn, topic_id(conn), 2) is None
    assert log.partition_get(conn, topic_id(conn) + 1, 0) is None


def test_append_gives_dense_offsets_and_keeps_the_counters(conn: sqlite3.Connection) -> None:
    assert append(conn, 0, [b"a", b"bb", None]) == 0
    assert append(conn, 0, [b"cccc"]) == 3
    part = catalog.partitions_get(conn, topic_id(conn))[0]
    assert (part.next_offset, part.record_count, part.byte_count) == (4, 4, 7)
    rows = log.records_list_by_range(conn, topic_id(conn), 0, 0, 100, 100)
    assert [(o, v) for o, _, _, v, _ in rows] == [(0, b"a"), (1, b"bb"), (2, None), (3, b"cccc")]
    assert catalog.partitions_get(conn, topic_id(conn))[1].next_offset == 0  # other untouched


def test_append_stores_keys_headers_and_timestamps(conn: sqlite3.Connection) -> None:
    append(conn, 1, [b"v0", b"v1"], keys=[b"k0", None], headers=['{"h":"1"}', None])
    append(conn, 1, [b"v2"], timestamps=[42])
    rows = log.records_list_by_range(conn, topic_id(conn), 1, 0, 10, 10)
    assert rows == [
        (0, 1_000, b"k0", b"v0", '{"h":"1"}'),
        (1, 1_000, None, b"v1", None),
        (2, 42, None, b"v2", None),
    ]


def test_time_index_records_only_new_maximum_timestamps(conn: sqlite3.Connection) -> None:
    append(conn, 0, [b"a", b"b"], now_ms=100)  # one entry for the batch
    append(conn, 0, [b"c"], now_ms=100)  # not newer: no entry
    append(conn, 0, [b"d", b"e", b"f", b"g"], timestamps=[150, 120, 200, 200])
    assert index_rows(conn, 0) == [(100, 0), (150, 3), (200, 5)]
    state = log.partition_get(conn, topic_id(conn), 0)
    assert state is not None and state.max_timestamp == 200


def test_append_one_matches_append(conn: sqlite3.Connection) -> None:
    tid = topic_id(conn)
    with WriteTransaction(conn, 1.0):
        state = log.partition_get(conn, tid, 0)
        assert state is not None
        assert log.record_append(conn, tid, 0, state, b"k", b"value", None, 500, 6) == 0
    with WriteTransaction(conn, 1.0):
        state = log.partition_get(conn, tid, 0)
        assert state is not None
        assert log.record_append(conn, tid, 0, state, None, b"older", None, 400, 5) == 1
    part = catalog.partitions_get(conn, tid)[0]
    assert (part.next_offset, part.record_count, part.byte_count, part.max_timestamp) == (
        2,
        2,
        11,
        500,
    )
    assert index_rows(conn, 0) == [(500, 0)]
    assert log.records_list_by_range(conn, tid, 0, 0, 2, 2)[1] == (1, 400, None, b"older", None)


def test_read_range_is_bounded_by_end_and_limit(conn: sqlite3.Connection) -> None:
    append(conn, 0, [b"%d" % i for i in range(10)])
    tid = topic_id(conn)
    assert [r[0] for r in log.records_list_by_range(conn, tid, 0, 3, 7, 100)] == [3, 4, 5, 6]
    assert [r[0] for r in log.records_list_by_range(conn, tid, 0, 3, 7, 2)] == [3, 4]
    assert log.records_list_by_range(conn, tid, 0, 10, 20, 5) == []
    assert log.records_list_by_range(conn, tid, 1, 0, 10, 5) == []


def test_watermarks_of_every_partition(conn: sqlite3.Connection) -> None:
    append(conn, 1, [b"x", b"y", b"z"])
    tid = topic_id(conn)
    with WriteTransaction(conn, 1.0):
        conn.execute(
            "UPDATE partitions SET log_start_offset = 2 WHERE topic_id = ? AND partition = 1",
            (tid,),
        )
    marks = [
        (p.partition, p.log_start_offset, p.next_offset) for p in catalog.partitions_get(conn, tid)
    ]
    assert marks == [(0, 0, 0), (1, 2, 3)]
    assert catalog.partitions_get(conn, tid + 1) == []


def test_offset_for_timestamp(conn: sqlite3.Connection) -> None:
    append(conn, 0, [b"a", b"b", b"c", b"d", b"e"], timestamps=[10, 30, 20, 40, 35])
    tid = topic_id(conn)
    assert log.time_index_find_by_timestamp(conn, tid, 0, 0, 0) == 0
    assert log.time_index_find_by_timestamp(conn, tid, 0, 10, 0) == 0
    assert log.time_index_find_by_timestamp(conn, tid, 0, 15, 0) == 1  # the first record >= 15
    assert log.time_index_find_by_timestamp(conn, tid, 0, 25, 0) == 1
    assert log.time_index_find_by_timestamp(conn, tid, 0, 35, 0) == 3
    assert log.time_index_find_by_timestamp(conn, tid, 0, 41, 0) is None  # newer than every record
    # Offsets below the log start were deleted: the answer comes from what is stored.
    with WriteTransaction(conn, 1.0):
        conn.execute(f'DELETE FROM {log.log_table(tid, 0)} WHERE "offset" < 2')
    assert log.time_index_find_by_timestamp(conn, tid, 0, 15, 2) == 2
    assert log.time_index_find_by_timestamp(conn, tid, 0, 36, 2) == 3
    assert log.time_index_find_by_timestamp(conn, tid, 1, 0, 0) is None  # an empty partition


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
@pytest.mark.parametrize("columns", ["values", "keys", "headers", "all"])
def test_large_appends_store_every_column_of_every_row(
    conn: sqlite3.Connection, n: int, columns: str
) -> None:
    """Appends go in multi-row statements with a remainder: every row lands, in order,
    with only its own columns set."""
    values: list[bytes | None] = [None if i % 7 == 0 else b"v%d" % i for i in range(n)]
    keys = [None if i % 3 == 0 else b"k%d" % i for i in range(n)]
    headers = [None if i % 2 else f'[["h","{i}"]]' for i in range(n)]
    timestamps = [5_000 + (i * 13) % 17 for i in range(n)]
    use_keys = columns in ("keys", "all")
    use_headers = columns in ("headers", "all")
    use_ts = columns == "all"
    append(conn, 1, [b"before"])
    base = append(
        conn,
        1,
        values,
        keys=keys if use_keys else None,
        headers=headers if use_headers else None,
        timestamps=timestamps if use_ts else None,
        now_ms=7_000,
    )
    assert base == 1
    rows = log.records_list_by_range(conn, topic_id(conn), 1, 1, 10**9, 10**9)
    assert rows == [
        (
            1 + i,
            timestamps[i] if use_ts else 7_000,
            keys[i] if use_keys else None,
            values[i],
            headers[i] if use_headers else None,
        )
        for i in range(n)
    ]
    state = log.partition_get(conn, topic_id(conn), 1)
    assert state is not None and state.next_offset == n + 1
