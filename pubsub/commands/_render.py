"""Human output: Rich tables, drawn only when stdout is a terminal.

Rich is imported here and only here, inside the functions, so commands that print data for
scripts never pay for it. Rich honours ``NO_COLOR``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pubsub.stats import Stats


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str | None = None,
    numeric: Sequence[int] = (),
    show_header: bool = True,
) -> None:
    """Print a table to stdout; ``numeric`` columns are right-aligned."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    grid = Table(
        title=title,
        box=box.SIMPLE_HEAD if show_header else None,
        title_justify="left",
        highlight=False,
        show_header=show_header,
    )
    for index, name in enumerate(columns):
        grid.add_column(name, justify="right" if index in numeric else "left", no_wrap=False)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    # NO_COLOR: no escape sequences at all, not even bold.
    plain = bool(os.environ.get("NO_COLOR"))
    Console(highlight=False, color_system=None if plain else "auto").print(grid)


def fields(pairs: Sequence[tuple[str, object]], *, title: str | None = None) -> None:
    """Print name/value pairs as a two-column table."""
    table(("", ""), [(name, value) for name, value in pairs], title=title, show_header=False)


class Progress:
    """A progress bar on stderr for long work: a terminal only, never in pipes.

    It appears only once the work has run for ``delay`` seconds, so quick jobs print nothing,
    and it is removed when the work ends (the command's own summary line stays). ``unit`` is
    ``"bytes"`` (sizes in KiB/MiB), ``"fraction"`` (a total of 1.0, percent only) or a noun
    counted with thousands separators. ``PUBSUB_NO_PROGRESS=1`` turns it off;
    ``PUBSUB_PROGRESS_DELAY`` sets the seconds before it appears.
    """

    def __init__(
        self, description: str, total: float | None = None, *, unit: str = "", delay: float = 0.3
    ) -> None:
        import sys
        import time

        self.enabled = sys.stderr.isatty() and not os.environ.get("PUBSUB_NO_PROGRESS")
        self._description = description
        self._total = total
        self._completed = 0.0
        self._unit = unit
        self._clock = time.monotonic
        with contextlib.suppress(ValueError):
            delay = float(os.environ.get("PUBSUB_PROGRESS_DELAY", delay))
        self._start_at = time.monotonic() + delay
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, line: str) -> None:
        """Print a line on stderr above the bar (or alone while there is none)."""
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            import sys

            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def advance(self, amount: float) -> None:
        """Count ``amount`` more units done."""
        self.update(self._completed + amount)

    def update(
        self,
        completed: float | None = None,
        *,
        total: float | None = None,
        description: str | None = None,
    ) -> None:
        """Set how much is done (and optionally the total and the description)."""
        if not self.enabled:
            return
        if completed is not None:
            self._completed = completed
        if total is not None:
            self._total = total
        if description is not None:
            self._description = description
        if self._bar is None:
            if self._clock() < self._start_at:
                return
            self._start()
        self._bar.update(
            self._task,
            completed=self._completed,
            total=self._total,
            description=self._description,
        )

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        columns: list[ProgressColumn] = [
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
        ]
        if self._unit == "bytes":
            columns.append(DownloadColumn(binary_units=True))
        elif self._unit != "fraction":
            columns.append(MofNCompleteColumn())
            if self._unit:
                columns.append(TextColumn(self._unit))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        plain = bool(os.environ.get("NO_COLOR"))
        console = Console(stderr=True, highlight=False, color_system=None if plain else "auto")
        self._bar = RichProgress(*columns, console=console, transient=True)
        self._task = self._bar.add_task(
            self._description, total=self._total, completed=self._completed
        )
        self._bar.start()


class MirrorProgress:
    """The progress bar of ``pubsub mirror``: records forwarded out of forwarded + lag."""

    def __init__(self) -> None:
        self._bar = Progress("forwarding", unit="records")

    def update(self, forwarded: int, lag: int) -> None:
        """A batch was committed: ``forwarded`` so far, ``lag`` records still to forward."""
        self._bar.update(forwarded, total=forwarded + lag)

    def note(self, line: str) -> None:
        """A state change, printed above the bar."""
        self._bar.note(line)

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()


def live() -> Any:
    """A Rich Live display on stdout (the dashboard of ``pubsub top``)."""
    from rich.console import Console
    from rich.live import Live

    plain = bool(os.environ.get("NO_COLOR"))
    console = Console(highlight=False, color_system=None if plain else "auto")
    return Live(console=console, auto_refresh=False, screen=True, transient=False)


def dashboard(
    stats: Stats,
    rates: dict[str, float],
    sparks: dict[str, str],
    db: str,
    done: dict[str, float] | None = None,
) -> Any:
    """The renderable of one ``pubsub top`` refresh (``done``: records each share group
    accepted or archived per second since the last one)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pubsub.commands._common import human_age, human_bytes

    topics = Table(box=box.SIMPLE_HEAD, title_justify="left", title="topics", expand=False)
    for name, right in (
        ("topic", False), ("partitions", True), ("records", True), ("size", True),
        ("rate", True), ("1m", True), ("newest", True), ("last 30 refreshes", False),
    ):  # fmt: skip
        topics.add_column(name, justify="right" if right else "left")
    for topic in stats.topics:
        topics.add_row(
            topic.name,
            str(len(topic.partitions)),
            f"{topic.records:,}",
            human_bytes(topic.bytes),
            f"{rates.get(topic.name, 0.0):,.1f}/s",
            f"{topic.rate_1m:,.1f}/s",
            human_age(stats.taken_ms, topic.newest_ms),
            sparks.get(topic.name, ""),
        )
    groups = Table(box=box.SIMPLE_HEAD, title_justify="left", title="groups", expand=False)
    for name, right in (("group", False), ("state", False), ("members", True), ("lag", True)):
        groups.add_column(name, justify="right" if right else "left")
    for group in stats.groups:
        groups.add_row(group.name, group.state, str(group.live_members), f"{group.lag:,}")
    header = Text(
        f"pubsub top  {db}  db {human_bytes(stats.file_bytes)}  "
        f"WAL {human_bytes(stats.wal_bytes)}   q: quit"
    )
    if not stats.share_groups:
        return Group(header, topics, groups)
    done = done or {}
    shares = Table(box=box.SIMPLE_HEAD, title_justify="left", title="share groups", expand=False)
    for name, right in (
        ("share group", False), ("members", True), ("available", True), ("acquired", True),
        ("accepted", True), ("settled", True), ("archived", True),
    ):  # fmt: skip
        shares.add_column(name, justify="right" if right else "left")
    for share in stats.share_groups:
        shares.add_row(
            share.name,
            str(share.members),
            f"{share.available:,}",
            f"{share.acquired:,}",
            f"{share.accepted:,}",
            f"{done.get(share.name, 0.0):,.1f}/s",
            f"{share.archived:,}",
        )
    return Group(header, topics, groups, shares)


def with_mirrors(renderable: Any, rows: Sequence[Any]) -> Any:
    """``renderable`` with a table of mirror lag below it (``pubsub top``), if there are any
    mirrors reading the file."""
    if not rows:
        return renderable
    from rich.console import Group
    from rich.table import Table

    grid = Table(title="mirrors", title_justify="left", highlight=False)
    for name, justify in (("mirror", "left"), ("partition", "left"), ("lag", "right"),
                          ("lag s", "right"), ("state", "left")):  # fmt: skip
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        grid.add_row(
            r.mirror, f"{r.topic}[{r.partition}]", f"{r.lag:,}", f"{r.lag_seconds:.1f}", r.state
        )
    return Group(renderable, grid)


class KeyReader:
    """Reads single key presses from a terminal (cbreak mode), restoring it afterwards."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._saved: Any = None
        try:
            self._fd: int | None = stream.fileno() if stream.isatty() else None
        except (AttributeError, ValueError, OSError):
            self._fd = None

    def __enter__(self) -> KeyReader:
        if self._fd is not None:
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def wait_for(self, key: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if ``key`` was pressed."""
        import select
        import time

        if self._fd is None:
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                pressed = os.read(self._fd, 32).decode("utf-8", "replace")
                if key in pressed.lower():
                    return True
