"""Waking up when another process commits, without busy polling.

SQLite has no cross-process notification, so a waiter combines two signals:

* **inotify on the database's directory** (Linux): every commit writes frames to the
  ``-wal`` file, and a write by any process raises an ``IN_MODIFY`` event for that file name.
  The waiter sleeps in ``poll(2)`` on the inotify descriptor, costing nothing while the
  database is quiet. The frames are written *before* the writer's fsync and before the
  commit becomes visible in the shared WAL index, so after an event the waiter checks
  ``PRAGMA data_version`` every 0.1 ms (every millisecond after the first 5 ms) until the
  commit shows, for four times the longest recent write-to-visible delay (it learns the
  disk's fsync time; 5 ms to 250 ms). The directory, not the file, is watched,
  so a WAL file deleted and created again (after the last connection closed) or truncated by
  a checkpoint is still seen.
* **``PRAGMA data_version``** alone, as the fallback where inotify is missing (other systems,
  or no inotify instance left, or ``PUBSUB_NO_INOTIFY=1``): it changes whenever another
  connection committed, and reading it costs a few microseconds. The waiter checks it with a
  back-off from 0.5 ms to 50 ms.

Either way the waiter only says "something changed"; the caller then reads what it needs.
"""

import errno
import os
import select
import sqlite3
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

#: First and longest pause between two checks of the polling fallback, in seconds.
MIN_INTERVAL = 0.0005
MAX_INTERVAL = 0.05
#: After an inotify event, watch for the commit to become visible for four times the longest
#: recent write-to-visible delay (the writer's fsync), within these bounds.
MIN_SETTLE_SECONDS = 0.005
SETTLE_SECONDS = 0.25

_IN_MODIFY = 0x00000002
_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT_HEADER = struct.Struct("iIII")

_libc: "ctypes.CDLL | None" = None
_libc_loaded = False


def _inotify_libc() -> "ctypes.CDLL | None":
    global _libc, _libc_loaded  # noqa: PLW0603  (loaded once per process)
    if not _libc_loaded:
        _libc_loaded = True
        import ctypes  # only followers need it; importing costs milliseconds
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.inotify_init1  # noqa: B018  (AttributeError where it does not exist)
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            _libc = libc
        except (OSError, AttributeError):
            _libc = None
    return _libc


class ChangeWaiter:
    """Blocks until another connection commits to the database, or a deadline passes.

    ``path`` is the database file (``None`` or ``:memory:``: polling only). With
    ``use_inotify=False`` the polling fallback is used even where inotify exists.
    """

    __slots__ = (
        "_conn",
        "_delay",
        "_fd",
        "_first_event",
        "_last_event",
        "_names",
        "_path",
        "_poller",
        "_settle_until",
        "_version",
    )

    def __init__(
        self,
        conn: sqlite3.Connection | Callable[[], sqlite3.Connection],
        path: str | None = None,
        *,
        use_inotify: bool = True,
    ) -> None:
        # A callable gives the current connection of an owner that may replace it (a Broker
        # reopens its connection after an I/O error).
        self._conn: Callable[[], sqlite3.Connection] = (
            (lambda: conn) if isinstance(conn, sqlite3.Connection) else conn
        )
        self._version = self._read()
        self._fd: int | None = None
        self._poller: select.poll | None = None
        self._names: tuple[bytes, ...] = ()
        self._last_event = 0.0
        self._first_event = 0.0
        self._settle_until = 0.0
        self._delay = 0.005  # learned: how long a commit takes to show after its WAL write
        wanted = use_inotify and os.environ.get("PUBSUB_NO_INOTIFY") != "1"
        # The watch is set up at the first wait: closing an inotify descriptor can take
        # milliseconds, which a reader that never waits (a one-shot command) should not pay.
        self._path = os.path.abspath(path) if wanted and path and path != ":memory:" else None

    @property
    def uses_inotify(self) -> bool:
        """True when waits sleep on inotify events rather than polling."""
        self._ensure_watch()
        return self._fd is not None

    def _ensure_watch(self) -> None:
        if self._path is not None:
            path, self._path = self._path, None
            self._watch(path)

    def _watch(self, path: str) -> None:
        libc = _inotify_libc()
        if libc is None:
            return
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            return  # no inotify instance left (EMFILE): poll instead
        directory, name = os.path.split(path)
        watch = libc.inotify_add_watch(
            fd, os.fsencode(directory or "."), _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        )
        if watch < 0:
            os.close(fd)
            return
        self._fd = fd
        self._names = (os.fsencode(name) + b"-wal",)
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def _read(self) -> int:
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    def mark(self) -> None:
        """Remember the current state: the next :meth:`wait` returns on a later commit."""
        self._version = self._read()

    def _changed(self) -> bool:
        version = self._read()
        if version != self._version:
            self._version = version
            return True
        return False

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a commit by another connection.

        Returns True when the database changed since the last :meth:`mark` or :meth:`wait`.
        """
        self._ensure_watch()
        if self._fd is None:
            return self._poll_wait(timeout)
        return self._inotify_wait(timeout)

    def _poll_wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        interval = MIN_INTERVAL
        while True:
            if self._changed():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, MAX_INTERVAL)

    def _inotify_wait(self, timeout: float) -> bool:
        assert self._poller is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._changed():
                if self._first_event:
                    # Learn how long commits take to show after their WAL write.
                    delay = time.monotonic() - self._first_event
                    self._delay = max(delay, self._delay * 0.9)
                    self._first_event = 0.0
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if now < self._settle_until:
                # A WAL write was seen lately and its commit may not be visible yet (the
                # writer is still syncing). The window outlives one wait() call: events of two
                # commits can come in one read while only the first is visible so far.
                if self._poller.poll(0) and self._relevant_events():
                    self._seen(now)
                time.sleep(0.0001 if now - self._last_event < 0.005 else 0.001)
                continue
            self._first_event = 0.0
            wait_ms = max(1, int((deadline - now) * 1000 + 0.999))
            if self._poller.poll(wait_ms) and self._relevant_events():
                self._seen(time.monotonic())

    def _seen(self, now: float) -> None:
        self._last_event = now
        if not self._first_event:
            self._first_event = now
        # Watch for a few times the longest recent write-to-visible delay (fsync time).
        window = min(SETTLE_SECONDS, max(MIN_SETTLE_SECONDS, 4 * self._delay))
        self._settle_until = now + window

    def _relevant_events(self) -> bool:
        assert self._fd is not None
        relevant = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return relevant
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            position = 0
            while position + _EVENT_HEADER.size <= len(data):
                _wd, _mask, _cookie, length = _EVENT_HEADER.unpack_from(data, position)
                start = position + _EVENT_HEADER.size
                name = data[start : start + length].rstrip(b"\0")
                if name in self._names:
                    relevant = True
                position = start + length

    def fileno(self) -> int | None:
        """The inotify descriptor (readable when the database directory changed), or None."""
        self._ensure_watch()
        return self._fd

    def drain(self) -> bool:
        """Read pending inotify events; True if one concerned the database."""
        return self._fd is not None and self._relevant_events()

    def changed(self) -> bool:
        """Whether another connection committed since the last check (and remember it)."""
        return self._changed()

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
