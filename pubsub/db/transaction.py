"""Transaction control: the only module that begins, commits or rolls back.

The policy, in one place:

* every write is ``BEGIN IMMEDIATE … COMMIT``. A deferred ``BEGIN`` that reads and then writes
  fails at once with ``SQLITE_BUSY`` (or ``SQLITE_BUSY_SNAPSHOT``) whatever the busy timeout,
  because SQLite will not wait when waiting could deadlock. Taking the write lock up front
  makes the busy timeout apply;
* reads run in autocommit mode, one statement each, so no read transaction stays open to pin
  the WAL and starve checkpoints;
* any sqlite3 exception leaving a block is translated to a :class:`~pubsub.errors.PubsubError`.

Query functions elsewhere in :mod:`pubsub.db` take a connection and never begin or commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from types import TracebackType

from pubsub.db.connection import jitter_sleep, translate_error
from pubsub.errors import BusyError, PubsubError, StorageError

#: Pauses between attempts to take a contended write lock: short at first, then at most
#: a millisecond. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50,
#: 100 ms between attempts, so a writer that meets a busy database once may sleep 25 ms
#: after the lock became free, and one that keeps meeting back-to-back writers starves.
_LOCK_POLL = (0.0001, 0.0002, 0.0005, 0.001)


def begin_immediate(conn: sqlite3.Connection, timeout: float, path: str = "") -> None:
    """Take the write lock, waiting up to ``timeout`` seconds in all.

    The lock is polled here, every millisecond at most, instead of through SQLite's busy
    handler (see ``_LOCK_POLL``): the connection's busy timeout is set to 0 for the attempt
    and put back once the lock is held. Conflicts that SQLite reports without waiting (WAL
    recovery by another connection, the last connection cleaning up on close) are retried
    the same way.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error as exc:
        raise translate_error(exc, path=path) from exc
    try:
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                err = translate_error(exc, path=path)
                if not isinstance(err, BusyError):
                    raise err from exc
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"database stayed locked for more than {timeout:g} s"
                        + (f" ({path})" if path else "")
                    ) from exc
            time.sleep(_LOCK_POLL[min(attempt, len(_LOCK_POLL) - 1)])
            attempt += 1
    finally:
        # Readers keep SQLite's busy handler for the rare locks they meet.
        conn.execute(f"PRAGMA busy_timeout = {round(timeout * 1000)}")


class WriteTransaction:
    """``with WriteTransaction(conn, timeout):`` — ``BEGIN IMMEDIATE`` … ``COMMIT``.

    On an exception the transaction is rolled back (if SQLite has not already done so, as it
    does after ``SQLITE_FULL``) and a sqlite3 error is re-raised translated. When that error
    is a :class:`~pubsub.errors.StorageError` (an I/O error, a full disk), ``on_storage_error``
    is called first: the owner of the connection closes it so it is never reused after a
    failed write (the next operation opens a new one).
    """

    __slots__ = ("conn", "on_storage_error", "path", "timeout")

    def __init__(
        self,
        conn: sqlite3.Connection,
        timeout: float,
        path: str = "",
        on_storage_error: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self.timeout = timeout
        self.path = path
        self.on_storage_error = on_storage_error

    def __enter__(self) -> sqlite3.Connection:
        try:
            begin_immediate(self.conn, self.timeout, self.path)
        except StorageError as exc:
            self._failed(exc)
            raise
        return self.conn

    def _failed(self, err: PubsubError) -> PubsubError:
        """``err``, after telling the owner when it means the connection is not to be trusted."""
        if isinstance(err, StorageError) and self.on_storage_error is not None:
            self.on_storage_error()
        return err

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self.conn
        if exc_type is None:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as commit_exc:
                _rollback(conn)
                raise self._failed(translate_error(commit_exc, path=self.path)) from commit_exc
            return
        _rollback(conn)
        if isinstance(exc, sqlite3.Error):
            raise self._failed(translate_error(exc, path=self.path)) from exc
        if isinstance(exc, StorageError):
            self._failed(exc)


class ReadTransaction:
    """``with ReadTransaction(conn):`` — several reads from one snapshot (checks, reports).

    The only deferred transaction in the project, and it cannot write: ``PRAGMA query_only``
    is on while it is open, so a write by mistake fails instead of taking the lock late (the
    deadlock-prone upgrade a deferred transaction allows). Keep it short: while it is open the
    WAL cannot be checkpointed past its snapshot.
    """

    __slots__ = ("conn", "path")

    def __init__(self, conn: sqlite3.Connection, path: str = "") -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("PRAGMA query_only = 1")
            self.conn.execute("BEGIN DEFERRED")  # read-only: see the class docstring
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA query_only = 0")
            raise translate_error(exc, path=self.path) from exc
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _rollback(self.conn)  # nothing was written: ending the snapshot is all there is
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA query_only = 0")
        if isinstance(exc, sqlite3.Error):
            raise translate_error(exc, path=self.path) from exc


class ReadScope:
    """``with ReadScope(path):`` — autocommit reads whose sqlite3 errors are translated."""

    __slots__ = ("path",)

    def __init__(self, path: str = "") -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise translate_error(exc, path=self.path) from exc


def _rollback(conn: sqlite3.Connection) -> None:
    # If ROLLBACK fails the connection is unusable or the transaction already gone; closing
    # the connection discards whatever is left.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def run_script_immediate(conn: sqlite3.Connection, statements: str, timeout: float) -> None:
    """Run ``statements`` to completion inside ``BEGIN IMMEDIATE … COMMIT``.

    For statements that must be stepped until done, such as ``PRAGMA incremental_vacuum``
    (``execute`` steps once, freeing one page). ``executescript`` steps every statement to the
    end; the script carries its own ``BEGIN IMMEDIATE`` because ``executescript`` would commit
    a transaction opened before it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {statements} COMMIT;")
            return
        except sqlite3.Error as exc:
            _rollback(conn)
            err = translate_error(exc)
            if not isinstance(err, BusyError) or time.monotonic() >= deadline:
                raise err from exc
        jitter_sleep(0.0005, 0.003)
