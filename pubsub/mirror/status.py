"""``pubsub mirror status``: what a file knows of the mirrors that read or write it.

As a mirror's source a file has its ``mirror_progress`` rows (how far each named mirror has
forwarded each partition), measured against the file's own log ends; as a destination it has
the ``mirror_positions`` the mirror committed with its records, measured against the source's
end as the mirror last saw it.

A Kafka cluster as a destination has the positions the mirrors committed in
``__pubsub_mirror_offsets`` (read with read_committed: what their transactions committed),
measured against the source's end now where the source can be read (a file on this machine,
a cluster this machine reaches), else against the end the mirror last saw.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from pubsub.broker import Broker
from pubsub.client import is_file
from pubsub.db import mirrors as sql
from pubsub.errors import OffsetOutOfRangeError, PubsubError, TopicNotFoundError

__all__ = ["MirrorStatus", "kafka_mirror_status", "mirror_lags", "mirror_status"]


class MirrorStatus(NamedTuple):
    """One mirrored partition as ``mirror status`` shows it."""

    mirror: str
    role: str  # "source": this file is read; "destination": it is written
    peer: str  # the other end
    topic: str  # the source topic
    partition: int
    source_end: int
    forwarded: int  # the next source offset to forward
    lag: int  # records
    lag_seconds: float
    last_forwarded_ms: int | None
    skipped: int  # records deleted at the source before they were forwarded
    state: str


def mirror_status(broker: Broker, mirror: str | None = None) -> list[MirrorStatus]:
    """Every mirrored partition this file knows of (of ``mirror`` only, if given)."""
    store = broker.store
    with store.read():
        progress = sql.mirror_progress_list(store.connection, mirror)
        positions = sql.mirror_positions_list(store.connection, mirror)
    now = broker.now()
    rows: list[MirrorStatus] = []
    marks: dict[str, dict[int, tuple[int, int]]] = {}
    for p in progress:
        try:
            if p.topic not in marks:
                marks[p.topic] = broker.watermarks(p.topic)
            start, end = marks[p.topic][p.partition]
        except (TopicNotFoundError, KeyError):
            continue
        lag = max(0, end - p.forwarded_offset)
        lag_seconds = 0.0
        if lag:
            try:
                first = broker.fetch(
                    p.topic, p.partition, max(start, p.forwarded_offset), max_records=1
                )
            except OffsetOutOfRangeError:
                first = []
            if first:
                lag_seconds = max(0.0, (now - first[0].timestamp) / 1000)
        rows.append(
            MirrorStatus(
                p.mirror,
                "source",
                p.destination,
                p.topic,
                p.partition,
                end,
                p.forwarded_offset,
                lag,
                lag_seconds,
                p.forwarded_ms,
                p.skipped,
                p.state,
            )
        )
    for q in positions:
        lag = max(0, q.source_end - q.next_offset)
        rows.append(
            MirrorStatus(
                q.mirror,
                "destination",
                q.source,
                q.topic,
                q.partition,
                q.source_end,
                q.next_offset,
                lag,
                max(0.0, (now - q.updated_ms) / 1000) if lag else 0.0,
                q.updated_ms,
                q.skipped,
                "behind" if lag else "caught up",
            )
        )
    return rows


def mirror_lags(broker: Broker) -> dict[str, int]:
    """Per mirror reading this file, the records it has still to forward (for metrics)."""
    lags: dict[str, int] = {}
    for row in mirror_status(broker):
        if row.role == "source":
            lags[row.mirror] = lags.get(row.mirror, 0) + row.lag
    return lags


#: (log end, timestamp of the record at an offset or None) of a source partition.
_Probe = Callable[[str, int, int], tuple[int, int | None]]


def _file_probe(path: str) -> tuple[_Probe, Callable[[], None]] | None:
    if not os.path.exists(path):
        return None
    broker = Broker(path, create=False)
    return _probe(broker.watermarks, broker.fetch), broker.close


def _probe(watermarks: Callable[[str], Any], fetch: Callable[..., Any]) -> _Probe:
    """A source's end of a partition, and the timestamp of its record at ``offset`` (None at
    the end), from its watermarks and a one-record fetch."""

    def probe(topic: str, partition: int, offset: int) -> tuple[int, int | None]:
        start, end = watermarks(topic)[partition]
        if offset >= end:
            return end, None
        first = fetch(topic, partition, max(start, offset), max_records=1)
        return end, first[0].timestamp if first else None

    return probe


def _kafka_probe(
    url: str, config_file: str | None, timeout: float
) -> tuple[_Probe, Callable[[], None]]:
    from pubsub.kafka.cluster import KafkaCluster

    cluster = KafkaCluster(url, config_file=config_file, timeout=timeout)
    return _probe(cluster.settled_watermarks, cluster.fetch), cluster.close


def kafka_mirror_status(
    url: str,
    mirror: str | None = None,
    *,
    config_file: str | None = None,
    timeout: float = 10.0,
    now_ms: int | None = None,
) -> list[MirrorStatus]:
    """Every partition mirrored into the Kafka cluster at ``url`` (of ``mirror`` only, if
    given), as ``mirror status`` shows it: the positions committed there, against the
    source's end now when the source can be read (else the end the mirror last saw; the
    state then says the source was not read)."""
    import time

    from pubsub.kafka.mirror import read_mirror_offsets

    entries = read_mirror_offsets(url, mirror, config_file=config_file, timeout=timeout)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    probes: dict[str, tuple[_Probe, Callable[[], None]] | None] = {}
    rows: list[MirrorStatus] = []
    try:
        for (name, topic, partition), entry in sorted(entries.items()):
            source = str(entry.get("source", ""))
            forwarded = int(entry["next_offset"])
            updated = int(entry.get("updated_ms", 0)) or None
            end, first_ms, read = int(entry.get("source_end", forwarded)), None, False
            if source not in probes:
                probes[source] = _probe_for(source, config_file, timeout)
            found = probes[source]
            if found is not None:
                try:
                    end, first_ms = found[0](topic, partition, forwarded)
                    read = True
                except (PubsubError, KeyError):
                    pass
            lag = max(0, end - forwarded)
            if not lag:
                lag_seconds = 0.0
            else:
                since = first_ms if first_ms is not None else updated
                lag_seconds = max(0.0, (now - since) / 1000) if since else 0.0
            state = "behind" if lag else "caught up"
            if not read:
                state += " (source not read)"
            rows.append(
                MirrorStatus(
                    name,
                    "destination",
                    source,
                    topic,
                    partition,
                    end,
                    forwarded,
                    lag,
                    lag_seconds,
                    updated,
                    int(entry.get("skipped", 0)),
                    state,
                )
            )
    finally:
        for found in probes.values():
            if found is not None:
                found[1]()
    return rows


def _probe_for(
    source: str, config_file: str | None, timeout: float
) -> tuple[_Probe, Callable[[], None]] | None:
    """A way to read a source's ends, None when it cannot be read from here."""
    try:
        if is_file(source):
            return _file_probe(source)
        return _kafka_probe(source, config_file, timeout)
    except PubsubError:
        return None
