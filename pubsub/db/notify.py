"""Waiting for another connection to commit.

SQLite has no cross-process notification. ``PRAGMA data_version`` changes whenever another
connection commits to the file, and reading it costs a few microseconds without touching the
log tables, so a waiter checks it with a back-off: quickly at first (a follower that just
caught up usually sees the next commit soon), then less often while the file stays quiet.
"""

from __future__ import annotations

import sqlite3
import time

#: First and longest pause between two checks, in seconds.
MIN_INTERVAL = 0.0005
MAX_INTERVAL = 0.02


class ChangeWaiter:
    """Blocks until another connection commits to the database, or a deadline passes."""

    __slots__ = ("_conn", "_version")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._version = self._read()

    def _read(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def mark(self) -> None:
        """Remember the current state: the next :meth:`wait` returns on a later commit."""
        self._version = self._read()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a commit by another connection.

        Returns True when the database changed since the last :meth:`mark` or :meth:`wait`.
        """
        deadline = time.monotonic() + timeout
        interval = MIN_INTERVAL
        while True:
            version = self._read()
            if version != self._version:
                self._version = version
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, MAX_INTERVAL)
