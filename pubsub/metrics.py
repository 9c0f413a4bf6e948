"""Prometheus metrics in the text exposition format (version 0.0.4).

``pubsub metrics`` prints them; with ``--textfile PATH`` it writes them atomically for
node_exporter's textfile collector (run it from cron or a systemd timer). Metric names follow
Prometheus' conventions: a ``pubsub_`` prefix, base units (bytes, seconds), ``_total`` only
for counters. See ``docs/metrics.md`` for the list.
"""

import os
from collections.abc import Iterable, Iterator

from pubsub.stats import Stats

#: name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "pubsub_partition_records": ("gauge", "Records stored in the partition."),
    "pubsub_partition_bytes": (
        "gauge",
        "Bytes of keys, values and headers stored in the partition.",
    ),
    "pubsub_partition_log_start_offset": ("gauge", "First offset still stored."),
    "pubsub_partition_next_offset": (
        "gauge",
        "Offset the next record will get (Kafka's log end offset).",
    ),
    "pubsub_partition_records_produced_total": (
        "counter",
        "Records ever produced to the partition (equal to its next offset).",
    ),
    "pubsub_partition_oldest_record_timestamp_seconds": (
        "gauge",
        "Timestamp of the oldest stored record.",
    ),
    "pubsub_partition_newest_record_timestamp_seconds": (
        "gauge",
        "Largest record timestamp written.",
    ),
    "pubsub_partition_produce_rate_per_second": (
        "gauge",
        "Records produced per second over the window (1m or 1h).",
    ),
    "pubsub_group_members": ("gauge", "Live members of the consumer group."),
    "pubsub_group_committed_offset": ("gauge", "The group's committed offset (next to read)."),
    "pubsub_group_lag": ("gauge", "Records between the group's committed offset and the log end."),
    "pubsub_share_group_members": ("gauge", "Members of the share group holding locks now."),
    "pubsub_share_group_start_offset": (
        "gauge",
        "The share group's start offset: every record below it is accepted or archived.",
    ),
    "pubsub_share_group_records_available": (
        "gauge",
        "Records the share group can deliver now.",
    ),
    "pubsub_share_group_records_acquired": (
        "gauge",
        "Records locked by members of the share group now (in flight).",
    ),
    "pubsub_share_group_backlog": (
        "gauge",
        "Records not yet accepted or archived by the share group (available + acquired).",
    ),
    "pubsub_share_group_records_accepted_total": (
        "counter",
        "Records the share group accepted.",
    ),
    "pubsub_share_group_records_archived_total": (
        "counter",
        "Records the share group rejected, dead-lettered or archived out of deliveries.",
    ),
    "pubsub_database_size_bytes": ("gauge", "Size of the database file."),
    "pubsub_wal_size_bytes": ("gauge", "Size of the write-ahead log file."),
    "pubsub_retention_last_run_timestamp_seconds": (
        "gauge",
        "When the last retention sweep finished (absent if none ran).",
    ),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str | int) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _samples(stats: Stats) -> Iterator[tuple[str, str, float]]:
    for topic in stats.topics:
        for p in topic.partitions:
            where = _labels(topic=p.topic, partition=p.partition)
            yield "pubsub_partition_records", where, p.records
            yield "pubsub_partition_bytes", where, p.bytes
            yield "pubsub_partition_log_start_offset", where, p.log_start_offset
            yield "pubsub_partition_next_offset", where, p.next_offset
            yield "pubsub_partition_records_produced_total", where, p.next_offset
            if p.oldest_ms is not None:
                yield "pubsub_partition_oldest_record_timestamp_seconds", where, p.oldest_ms / 1000
            if p.newest_ms is not None:
                yield "pubsub_partition_newest_record_timestamp_seconds", where, p.newest_ms / 1000
            for window, rate in (("1m", p.rate_1m), ("1h", p.rate_1h)):
                yield (
                    "pubsub_partition_produce_rate_per_second",
                    _labels(topic=p.topic, partition=p.partition, window=window),
                    rate,
                )
    for group in stats.groups:
        yield "pubsub_group_members", _labels(group=group.name), group.live_members
        for lag in group.partitions:
            if lag.committed_offset is None:
                continue
            where = _labels(group=group.name, topic=lag.topic, partition=lag.partition)
            yield "pubsub_group_committed_offset", where, lag.committed_offset
            yield "pubsub_group_lag", where, lag.lag or 0
    for share in stats.share_groups:
        yield "pubsub_share_group_members", _labels(group=share.name), share.members
        for b in share.partitions:
            where = _labels(group=share.name, topic=b.topic, partition=b.partition)
            yield "pubsub_share_group_start_offset", where, b.start_offset
            yield "pubsub_share_group_records_available", where, b.available
            yield "pubsub_share_group_records_acquired", where, b.acquired
            yield "pubsub_share_group_backlog", where, b.backlog
            yield "pubsub_share_group_records_accepted_total", where, b.accepted
            yield "pubsub_share_group_records_archived_total", where, b.archived
    yield "pubsub_database_size_bytes", "", stats.file_bytes
    yield "pubsub_wal_size_bytes", "", stats.wal_bytes
    if stats.last_retention_ms is not None:
        yield "pubsub_retention_last_run_timestamp_seconds", "", stats.last_retention_ms / 1000


def exposition(stats: Stats) -> str:
    """The metrics as Prometheus text, grouped by metric with HELP and TYPE lines."""
    by_name: dict[str, list[str]] = {name: [] for name in METRICS}
    for name, labels, value in _samples(stats):
        by_name[name].append(f"{name}{labels} {_number(value)}")
    lines: list[str] = []
    for name, samples in by_name.items():
        if not samples:
            continue
        kind, text = METRICS[name]
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


#: The lag of the mirrors reading a file (``pubsub mirror``), from its mirror_progress rows.
MIRROR_METRICS: dict[str, tuple[str, str]] = {
    "pubsub_mirror_lag_records": ("gauge", "Records of the partition a mirror has not forwarded."),
    "pubsub_mirror_lag_seconds": (
        "gauge",
        "Age of the oldest record of the partition a mirror has not forwarded (0: caught up).",
    ),
}


def mirror_exposition(rows: Iterable[tuple[str, str, int, int, float]]) -> str:
    """Mirror lag as Prometheus text: ``rows`` are (mirror, topic, partition, lag records,
    lag seconds); empty when there is none."""
    rows = list(rows)
    if not rows:
        return ""
    lines: list[str] = []
    for index, (name, (kind, text)) in enumerate(MIRROR_METRICS.items()):
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for mirror, topic, partition, records, seconds in rows:
            labels = _labels(mirror=mirror, topic=topic, partition=partition)
            lines.append(f"{name}{labels} {_number(records if index == 0 else seconds)}")
    return "\n".join(lines) + "\n"


def write_textfile(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a file).

    The text goes to a hidden temporary file in the same directory (node_exporter reads only
    ``*.prom``), is synced, made world-readable and renamed over ``path``.
    """
    from pubsub.errors import StorageError

    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror}",
            hint="check that the directory exists and is writable",
        ) from exc
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
