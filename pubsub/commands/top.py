"""``pubsub top``: a live dashboard of topics, groups and share groups (rates, lag, backlog,
sparklines)."""

import collections
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import finite, state
from pubsub.commands._output import emit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pubsub.backend import LogClient
    from pubsub.stats import Stats

HISTORY = 30
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: "collections.abc.Sequence[float]") -> str:
    """Unicode block characters for a series (empty when there is none)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


class Rates:
    """Records per second per topic, from the change of its next offsets between snapshots."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, int]] = {}
        self.history: dict[str, collections.deque[float]] = {}

    def update(self, stats: "Stats", now: float) -> dict[str, float]:
        current: dict[str, float] = {}
        for topic in stats.topics:
            produced = sum(p.next_offset for p in topic.partitions)
            before = self.last.get(topic.name)
            rate = 0.0
            if before is not None and now > before[0]:
                rate = max(0.0, (produced - before[1]) / (now - before[0]))
            self.last[topic.name] = (now, produced)
            self.history.setdefault(topic.name, collections.deque(maxlen=HISTORY)).append(rate)
            current[topic.name] = rate
        return current


class Settled:
    """Records per second each share group accepted or archived, between snapshots."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, int]] = {}

    def update(self, stats: "Stats", now: float) -> dict[str, float]:
        current: dict[str, float] = {}
        for share in stats.share_groups:
            settled = share.accepted + share.archived
            before = self.last.get(share.name)
            rate = 0.0
            if before is not None and now > before[0]:
                rate = max(0.0, (settled - before[1]) / (now - before[0]))
            self.last[share.name] = (now, settled)
            current[share.name] = rate
        return current


def top(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", "-i", min=0.2, help="Seconds between refreshes.", callback=finite
        ),
    ] = 1.0,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", "-n", min=1, help="Stop after this many refreshes."),
    ] = None,
) -> None:
    """A live dashboard of topics (records, size, rate, sparkline), groups (lag) and share
    groups (records available, acquired, accepted per second).

    Press q (or Ctrl-C) to leave. When stdout is not a terminal it prints one snapshot as
    JSON, like 'pubsub stats'.

    Examples:

      pubsub top
      pubsub top --interval 5
    """
    settings = state(ctx)
    with settings.client() as client:
        emit(
            _snapshot(client),
            as_json=False,
            render=lambda: _dashboard(client, settings.db, interval, iterations),
        )


def _snapshot(client: "LogClient") -> "Iterator[dict[str, Any]]":
    """One snapshot as 'pubsub stats' prints it (taken only if JSON is printed)."""
    from pubsub.commands._common import mirror_lag_rows
    from pubsub.commands.stats import stats_json

    document = stats_json(client.stats())
    mirrors = mirror_lag_rows(client)
    if mirrors:
        document["mirrors"] = [
            {k: v for k, v in r._asdict().items() if k != "role"} for r in mirrors
        ]
    yield document


def _dashboard(client: "LogClient", target: str, interval: float, iterations: int | None) -> None:
    """Redraw until q, Ctrl-C or ``iterations`` refreshes."""
    from pubsub.commands import _render
    from pubsub.commands._common import mirror_lag_rows

    rates = Rates()
    settled = Settled()
    keys = _render.KeyReader(sys.stdin)
    count = 0
    try:
        with keys, _render.live() as screen:
            while True:
                snapshot = client.stats()
                now = time.monotonic()
                current = rates.update(snapshot, now)
                screen.update(
                    _render.with_mirrors(
                        _render.dashboard(
                            snapshot,
                            current,
                            {name: sparkline(list(h)) for name, h in rates.history.items()},
                            target,
                            settled.update(snapshot, now),
                        ),
                        mirror_lag_rows(client),
                    ),
                    refresh=True,
                )
                count += 1
                if iterations is not None and count >= iterations:
                    return
                if keys.wait_for("q", interval):
                    return
    except KeyboardInterrupt:
        return
