"""Where a command's result goes: the one place that chooses JSON Lines or a human renderer.

stdout carries data only. A result is printed as JSON Lines when ``--json`` is given or when
stdout is not a terminal (a pipe, a file), and drawn by the command's renderer on a terminal.
Commands whose result on a terminal is only a confirmation on stderr (``topic create``) print
JSON only when asked (``json_when_piped=False``), so a script piping them gets no surprise
data. A reader that closes the pipe early (``| head``) ends the command quietly: the
BrokenPipeError is turned into exit 0 by the composition root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["emit", "stdout_is_tty", "write_json_lines"]


def emit(
    objects: Iterable[Any],
    *,
    as_json: bool,
    render: Callable[[], None] | None = None,
    json_when_piped: bool = True,
) -> bool:
    """Print a result: ``objects`` as JSON Lines, or ``render()`` for a human.

    JSON when ``as_json`` (``--json``), or when stdout is not a terminal unless
    ``json_when_piped`` is False; otherwise ``render()`` (nothing if it is None). ``objects``
    is only iterated when JSON is printed, so a generator costs nothing on a terminal.
    Returns True when JSON was printed.
    """
    if as_json or (json_when_piped and not stdout_is_tty()):
        write_json_lines(objects)
        return True
    if render is not None:
        render()
    return False


def stdout_is_tty() -> bool:
    """True when stdout is a terminal (then human tables are drawn)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def write_json_lines(objects: Iterable[Any]) -> None:
    """Write one compact JSON object per line to stdout."""
    import json

    out = sys.stdout
    for obj in objects:
        out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()
