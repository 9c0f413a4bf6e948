"""``pubsub group`` for share groups: list rows, describe, reset start offsets, delete."""

import time
from typing import TYPE_CHECKING, Any

from pubsub.commands._common import fail, note
from pubsub.commands._output import stdout_is_tty, write_json_lines

if TYPE_CHECKING:
    from collections.abc import Callable

    from pubsub.broker import Broker
    from pubsub.models import ShareGroupInfo, SharePartitionInfo


def share_json(group: "ShareGroupInfo", *, detail: bool) -> dict[str, Any]:
    """A share group as JSON: ``type`` is ``"share"``; with ``detail`` its partitions."""
    topics = list(dict.fromkeys(p.topic for p in group.partitions))
    data: dict[str, Any] = {
        "name": group.name,
        "type": "share",
        "state": "Stable" if group.members else "Empty",
        "members": len(group.members),
        "topics": topics,
        "lag": group.backlog,
    }
    if detail:
        data["members"] = list(group.members)
        data["live_members"] = len(group.members)
        data["partitions"] = [_partition_json(p) for p in group.partitions]
    return data


def _partition_json(part: "SharePartitionInfo") -> dict[str, Any]:
    return {
        "topic": part.topic,
        "partition": part.partition,
        "start_offset": part.start_offset,
        "end_offset": part.end_offset,
        "next_offset": part.next_offset,
        "available": part.available,
        "acquired": [
            {"offset": o, "member": m, "delivery_count": d, "seconds_left": round(s, 3)}
            for o, m, d, s in part.acquired
        ],
        "deliveries": {str(k): v for k, v in part.deliveries.items()},
        "accepted": part.accepted,
        "archived": part.archived,
    }


def list_rows(broker: "Broker") -> list[tuple[object, ...]]:
    """Rows of ``group list``'s table for the share groups."""
    return [
        (
            g.name,
            "share",
            "Stable" if g.members else "Empty",
            len(g.members),
            ", ".join(dict.fromkeys(p.topic for p in g.partitions)),
            f"{g.backlog:,}",
        )
        for g in broker.list_share_groups()
    ]


def describe(broker: "Broker", name: str, as_json: bool) -> None:
    """``group describe`` of a share group."""
    group = broker.describe_share_group(name)
    if as_json or not stdout_is_tty():
        write_json_lines([share_json(group, detail=True)])
        return
    from pubsub.commands import _render

    rows = []
    for p in group.partitions:
        holders: dict[str, tuple[int, float]] = {}
        for _offset, member, _count, left in p.acquired:
            count, longest = holders.get(member, (0, 0.0))
            holders[member] = (count + 1, max(longest, left))
        acquired = "; ".join(
            f"{n} by {m} (≤{left:.1f}s)" for m, (n, left) in sorted(holders.items())
        )
        histogram = " ".join(f"{k}×{v}" for k, v in p.deliveries.items())
        rows.append(
            (
                p.topic,
                p.partition,
                p.start_offset,
                p.next_offset,
                p.available,
                acquired or "-",
                histogram or "-",
                p.accepted,
                p.archived,
            )
        )
    _render.table(
        (
            "topic",
            "partition",
            "start",
            "log end",
            "available",
            "acquired",
            "deliveries",
            "accepted",
            "archived",
        ),
        rows,
        title=f"share group {group.name}",
        numeric=(1, 2, 3, 4, 7, 8),
    )


def reset(
    broker: "Broker",
    name: str,
    topics: list[str] | None,
    *,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    shift_by: int | None,
    execute: bool,
    as_json: bool,
) -> None:
    """``group reset-offsets`` of a share group: moves its start offsets."""
    chosen = sum([to_earliest, to_latest, to_offset is not None, shift_by is not None])
    if chosen != 1:
        fail(
            "a share group resets with one of --to-earliest, --to-latest, --to-offset, --shift-by",
            "its start offset moves; the records it held are released",
        )
    current = {
        (p.topic, p.partition): p.start_offset for p in broker.describe_share_group(name).partitions
    }

    def where_for(topic: str) -> "Callable[[int, int, int], int]":
        def where(partition: int, start: int, end: int) -> int:
            if to_earliest:
                return start
            if to_latest:
                return end
            if to_offset is not None:
                return to_offset
            assert shift_by is not None
            return current.get((topic, partition), start) + shift_by

        return where

    names = topics or list(dict.fromkeys(t for t, _ in current))
    plan: list[tuple[str, int, int, int]] = []
    for topic in names:
        if execute:
            plan.extend(broker.reset_share_group(name, topic, where_for(topic)))
        else:
            marks = broker.watermarks(topic)
            for (t, partition), old in current.items():
                if t == topic:
                    start, end = marks[partition]
                    new = min(max(where_for(topic)(partition, start, end), start), end)
                    plan.append((t, partition, old, new))
    if as_json or not stdout_is_tty():
        write_json_lines(
            {"group": name, "topic": t, "partition": p, "current": o, "new": n}
            for t, p, o, n in plan
        )
    else:
        from pubsub.commands import _render

        _render.table(("topic", "partition", "current", "new"), plan, numeric=(1, 2, 3))
    if not execute:
        note("dry run: nothing changed (add --execute to apply)")
    else:
        note(f"share group {name}: start offsets moved at {time.strftime('%H:%M:%S')}")
