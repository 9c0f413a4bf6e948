"""``pubsub mirror status``: what a file knows of the mirrors that read or write it.

As a mirror's source a file has its ``mirror_progress`` rows (how far each named mirror has
forwarded each partition), measured against the file's own log ends; as a destination it has
the ``mirror_positions`` the mirror committed with its records, measured against the source's
end as the mirror last saw it.
"""

from __future__ import annotations

from typing import NamedTuple

from pubsub.broker import Broker
from pubsub.db import mirrors as sql
from pubsub.errors import OffsetOutOfRangeError, TopicNotFoundError

__all__ = ["MirrorStatus", "mirror_lags", "mirror_status"]


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
