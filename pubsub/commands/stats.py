"""``pubsub stats``: sizes, ages, produce rates and lag at a glance."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    JsonOption,
    complete_topic,
    human_age,
    human_bytes,
    state,
    topic_names,
)
from pubsub.commands._output import emit

if TYPE_CHECKING:
    from pubsub.stats import Stats


def stats_json(stats: "Stats") -> dict[str, Any]:
    """The snapshot as one JSON object."""
    return {
        "taken_ms": stats.taken_ms,
        "file_bytes": stats.file_bytes,
        "wal_bytes": stats.wal_bytes,
        "last_retention_ms": stats.last_retention_ms,
        "topics": [
            {
                "name": t.name,
                "records": t.records,
                "bytes": t.bytes,
                "oldest_ms": t.oldest_ms,
                "newest_ms": t.newest_ms,
                "rate_1m": t.rate_1m,
                "rate_1h": t.rate_1h,
                "partitions": [p._asdict() for p in t.partitions],
            }
            for t in stats.topics
        ],
        "groups": [
            {
                "name": g.name,
                "state": g.state,
                "members": g.live_members,
                "lag": g.lag,
                "topics": list(g.topics),
                "partitions": [
                    {
                        "topic": lag.topic,
                        "partition": lag.partition,
                        "committed_offset": lag.committed_offset,
                        "lag": lag.lag,
                    }
                    for lag in g.partitions
                ],
            }
            for g in stats.groups
        ],
        "share_groups": [
            {
                "name": g.name,
                "members": g.members,
                "available": g.available,
                "acquired": g.acquired,
                "backlog": g.backlog,
                "accepted": g.accepted,
                "archived": g.archived,
                "topics": list(g.topics),
                "partitions": [
                    {
                        "topic": p.topic,
                        "partition": p.partition,
                        "start_offset": p.start_offset,
                        "end_offset": p.end_offset,
                        "next_offset": p.next_offset,
                        "available": p.available,
                        "acquired": p.acquired,
                        "backlog": p.backlog,
                        "accepted": p.accepted,
                        "archived": p.archived,
                    }
                    for p in g.partitions
                ],
            }
            for g in stats.share_groups
        ],
    }


def render(stats: "Stats") -> None:
    """Tables for a terminal."""
    from pubsub.commands import _render

    now = stats.taken_ms
    _render.table(
        ("topic", "partition", "records", "size", "oldest", "newest", "rate 1m", "rate 1h"),
        [
            (
                p.topic,
                p.partition,
                f"{p.records:,}",
                human_bytes(p.bytes),
                human_age(now, p.oldest_ms),
                human_age(now, p.newest_ms),
                f"{p.rate_1m:,.1f}/s",
                f"{p.rate_1h:,.1f}/s",
            )
            for t in stats.topics
            for p in t.partitions
        ],
        numeric=(1, 2, 3, 6, 7),
    )
    if stats.groups:
        _render.table(
            ("group", "state", "members", "topics", "lag"),
            [
                (g.name, g.state, g.live_members, ", ".join(g.topics), f"{g.lag:,}")
                for g in stats.groups
            ],
            numeric=(2, 4),
        )
    if stats.share_groups:
        _render.table(
            (
                "share group", "topic", "partition", "start", "available", "acquired",
                "accepted", "archived",
            ),
            [
                (
                    p.group, p.topic, p.partition, f"{p.start_offset:,}", f"{p.available:,}",
                    f"{p.acquired:,}", f"{p.accepted:,}", f"{p.archived:,}",
                )
                for g in stats.share_groups
                for p in g.partitions
            ],
            numeric=(2, 3, 4, 5, 6, 7),
        )  # fmt: skip


def stats(
    ctx: typer.Context,
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            help="Topics to show (default: all).",
            show_default=False,
            autocompletion=complete_topic,
            callback=topic_names,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Per topic and partition: records, bytes, oldest and newest record age, produce rate
    over the last minute and hour; per group: state, members and lag; per share group and
    partition: start offset, records available, acquired (in flight), accepted and archived.

    Reads counters and indexes only, never the logs themselves, so it stays fast on large
    databases.

    Examples:

      pubsub stats
      pubsub stats orders --json | jq '.groups[] | select(.lag > 0)'
    """
    from pubsub.commands._common import mirror_lag_rows

    with state(ctx).client() as client:
        snapshot = client.stats(topics or None)
        mirrors = mirror_lag_rows(client)
    document = stats_json(snapshot)
    if mirrors:
        document["mirrors"] = [
            {k: v for k, v in r._asdict().items() if k not in ("role",)} for r in mirrors
        ]

    def draw() -> None:
        render(snapshot)
        render_mirrors(mirrors)

    emit([document], as_json=as_json, render=draw)


def render_mirrors(rows: list[Any]) -> None:
    """The lag of the mirrors reading this file (``pubsub mirror``), if any."""
    if not rows:
        return
    from pubsub.commands import _render

    _render.table(
        ("mirror", "partition", "forwarded to", "lag", "lag s", "state"),
        [
            (r.mirror, f"{r.topic}[{r.partition}]", r.forwarded, f"{r.lag:,}",
             f"{r.lag_seconds:.1f}", r.state)
            for r in rows
        ],
        numeric=(2, 3, 4),
    )  # fmt: skip
