"""Human output: Rich tables, drawn only when stdout is a terminal.

Rich is imported here and only here, inside the functions, so commands that print data for
scripts never pay for it. Rich honours ``NO_COLOR``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


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


class Status:
    """A spinner with a message on stderr while long work runs (terminal only)."""

    def __init__(self, message: str) -> None:
        import sys

        self._status = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status(message)

    def __enter__(self) -> Status:
        if self._status is not None:
            self._status.start()
        return self

    def update(self, message: str) -> None:
        """Change the message."""
        if self._status is not None:
            self._status.update(message)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
