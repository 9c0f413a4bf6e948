"""Statistics for operators: sizes, ages, produce rates, lag — without scanning the logs.

Everything comes from the counters every append and delete keeps (``partitions``), one
indexed lookup per partition for its oldest record, and the time index for rates: the
records produced in the last minute are ``next_offset`` minus the first offset whose
timestamp is within that minute, found in O(log n).
"""

import os
from collections.abc import Iterable

from pubsub.db import catalog, log, retention
from pubsub.db import shares as share_sql
from pubsub.db.store import Store
from pubsub.db.transaction import ReadTransaction
from pubsub.models import (
    PartitionStats,
    ShareBacklog,
    ShareGroupStats,
    Stats,
    TopicStats,
)

__all__ = ["PartitionStats", "ShareBacklog", "ShareGroupStats", "Stats", "TopicStats", "collect"]


def _rate(first: int | None, end: int, window_ms: int) -> float:
    """Records per second produced since ``first`` (None: nothing within the window).

    ``first`` is the offset where the partition's running maximum timestamp first reached the
    window's start: every record before it is older, so with in-order timestamps it is the
    first record of the window. Records deleted since still count: they were produced.
    """
    if first is None:
        return 0.0
    return (end - first) / (window_ms / 1000)


def collect(store: Store, topics: Iterable[str] | None = None) -> Stats:
    """One consistent snapshot of every (or the named) topic's statistics, and the groups'.

    One statement reads every partition's counters and its two time-index lookups; then one
    indexed step per non-empty partition finds its oldest record. Share groups: one statement
    counts what each one's in-flight windows hold (bounded, never the log).
    """
    from pubsub.errors import TopicNotFoundError
    from pubsub.group_admin import list_groups
    from pubsub.shares import lock_params

    now = store.now()
    conn = store.connection
    wanted = None if topics is None else list(dict.fromkeys(topics))
    by_topic: dict[str, list[PartitionStats]] = {}
    with ReadTransaction(conn, store.path):
        names = {row.name for row in catalog.topic_list(conn)}
        for name in wanted or ():
            if name not in names:
                raise TopicNotFoundError(name)
        rows = catalog.partitions_survey(conn, now - 60_000, now - 3_600_000, wanted)
        for (
            name, topic_id, partition, start, end, max_ts, records, nbytes, first_1m, first_1h,
        ) in rows:  # fmt: skip
            oldest = None
            if records:
                first = log.records_peek(conn, topic_id, partition)
                oldest = None if first is None else first[1]
            by_topic.setdefault(name, []).append(
                PartitionStats(
                    topic=name,
                    partition=partition,
                    records=records,
                    bytes=nbytes,
                    log_start_offset=start,
                    next_offset=end,
                    oldest_ms=oldest,
                    newest_ms=None if max_ts < 0 else max_ts,
                    rate_1m=_rate(first_1m, end, 60_000),
                    rate_1h=_rate(first_1h, end, 3_600_000),
                )
            )
        result = [TopicStats(name, tuple(parts)) for name, parts in by_topic.items()]
        last = retention.retention_runs_max(conn)
        groups = list_groups(store)  # on the same connection: inside the same snapshot
        lock = lock_params(store)
        backlogs = share_sql.share_partitions_survey(conn, lock)
        holders = share_sql.share_records_count_by_group(conn, lock)
    if wanted is not None:
        groups = [g for g in groups if set(g.topics) & set(wanted)]
        backlogs = [row for row in backlogs if row.topic in wanted]

    def size(path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0

    return Stats(
        taken_ms=now,
        topics=tuple(result),
        groups=tuple(groups),
        file_bytes=size(store.path),
        wal_bytes=size(store.path + "-wal"),
        last_retention_ms=last,
        share_groups=_share_groups(backlogs, holders),
    )


def _share_groups(
    rows: list[share_sql.ShareBacklogRow], holders: dict[str, int]
) -> tuple[ShareGroupStats, ...]:
    """The survey's rows as share groups: the start offset clamped to the log's start (as
    ``group describe`` shows it), records available in the window and past its end."""
    by_group: dict[str, list[ShareBacklog]] = {}
    for row in rows:
        start = max(row.start_offset, row.log_start_offset)
        end = max(row.end_offset, start)
        waiting = row.undecided - row.acquired  # available, or under a lock that ran out
        by_group.setdefault(row.group, []).append(
            ShareBacklog(
                group=row.group,
                topic=row.topic,
                partition=row.partition,
                start_offset=start,
                end_offset=end,
                next_offset=row.next_offset,
                available=waiting + max(0, row.next_offset - end),
                acquired=row.acquired,
                accepted=row.accepted_count,
                archived=row.archived_count,
            )
        )
    return tuple(
        ShareGroupStats(name, holders.get(name, 0), tuple(parts))
        for name, parts in by_group.items()
    )
