"""The storage handle every service takes: one connection, its transactions, one clock.

A :class:`Store` owns the reconnecting connection holder of one database file and is the only
way the services above :mod:`pubsub.db` begin work on it: :meth:`Store.write` (``BEGIN
IMMEDIATE``), :meth:`Store.read` (autocommit reads, errors translated) and
:meth:`Store.snapshot` (several reads from one snapshot). It carries the :class:`Clock` tests
inject (wall time, the lease clock and the boot id), so no service reads a clock of its own.
Background threads (heartbeats, background commits) take a :meth:`Store.sibling`: the same
file, settings and clock on a connection of their own.

A Store is used from one thread, as its connection is.
"""

import os
import sqlite3
import time
from collections.abc import Callable
from types import TracebackType

from pubsub.db import schema
from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, Reconnecting, SyncMode, translate_error
from pubsub.db.files import DEFAULT_FILE_MODE
from pubsub.db.pragmas import pragma_set
from pubsub.db.transaction import ReadScope, ReadTransaction, WriteTransaction
from pubsub.errors import InvalidArgumentError

__all__ = ["Clock", "Store", "boot_id", "lease_clock_ms", "wall_clock_ms"]

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_boot_id: str | None = None


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def lease_clock_ms() -> int:
    """Milliseconds of the boot-time clock: steady, not moved by wall-clock changes."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is not None:
        return time.clock_gettime_ns(clock) // 1_000_000
    return time.monotonic_ns() // 1_000_000


def boot_id() -> str:
    """An identifier of the current boot of this machine (Linux: the kernel's boot_id).

    Where the kernel offers none, a constant: a lease from before a reboot is then recognised
    by being further ahead of the clock than any session can be (see ``db.membership.LIVE``).
    """
    global _boot_id  # noqa: PLW0603  (read once per process)
    if _boot_id is None:
        try:
            with open(_BOOT_ID_PATH, encoding="ascii") as handle:
                _boot_id = handle.read().strip()
        except OSError:
            _boot_id = "no-boot-id"
    return _boot_id


class Clock:
    """The times a store's services use: ``wall()`` for timestamps, ``lease()`` for leases.

    Record timestamps and commit times come from the wall clock; group leases from the
    boot-time clock, which wall-clock changes do not move, tagged with the boot id so a lease
    from before a reboot is never mistaken for a live one. Tests pass their own functions.
    """

    __slots__ = ("_boot", "lease", "wall")

    def __init__(
        self,
        wall: Callable[[], int] | None = None,
        lease: Callable[[], int] | None = None,
        boot: str | None = None,
    ) -> None:
        self.wall: Callable[[], int] = wall or wall_clock_ms
        self.lease: Callable[[], int] = lease or lease_clock_ms
        self._boot = boot

    @property
    def boot_id(self) -> str:
        """This boot's id (read on first use: a producer never needs it)."""
        if self._boot is None:
            self._boot = boot_id()
        return self._boot


class Store:
    """One database file's connection, transactions and clock (see the module docstring).

    ``check_schema`` creates or upgrades the schema on opening (a sibling skips it: its
    parent did). Raises what :func:`pubsub.db.connection.connect` and
    :func:`pubsub.db.schema.ensure_current` raise.
    """

    __slots__ = (
        "_autocheckpoint",
        "_closed",
        "_link",
        "applied_migrations",
        "busy_timeout",
        "clock",
        "file_mode",
        "path",
        "sync",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: SyncMode = "full",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        file_mode: int = DEFAULT_FILE_MODE,
        clock: Clock | None = None,
        check_schema: bool = True,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.sync: SyncMode = sync
        self.busy_timeout = busy_timeout
        self.file_mode = file_mode
        self.clock = clock or Clock()
        self._closed = False
        self._link = Reconnecting(
            self.path, sync=sync, busy_timeout=busy_timeout, create=create, file_mode=file_mode
        )
        self._autocheckpoint = autocheckpoint
        self.applied_migrations: list[int] = []
        if check_schema:  # a sibling connects on first use, in its own thread
            try:
                self.applied_migrations = schema.ensure_current(
                    self.connection, busy_timeout=busy_timeout, path=self.path
                )
            except BaseException:
                self._link.discard()
                raise

    # -- the connection --------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection; a new one when a write failed with an I/O error on the last."""
        conn = self._link.current  # the hot path: one attribute read
        if conn is not None:
            return conn
        if self._closed:
            raise InvalidArgumentError("the database handle is closed")
        conn = self._link.get()
        if not self._autocheckpoint:
            try:
                pragma_set(conn, "wal_autocheckpoint", 0)  # leave it to the writers
            except sqlite3.Error as exc:
                self._link.discard()
                raise translate_error(exc, path=self.path) from exc
        return conn

    @property
    def live(self) -> sqlite3.Connection | None:
        """The open connection, None between an I/O error and the next use."""
        return self._link.current

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def in_memory(self) -> bool:
        """True for ``:memory:`` (no file: no groups, no space checks)."""
        return self.path == ":memory:"

    def discard(self) -> None:
        """Drop the connection without trusting it again; the next use opens a new one."""
        self._link.discard()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._link.discard()

    def __enter__(self) -> "Store":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------

    def write(self, busy_timeout: float | None = None) -> WriteTransaction:
        """``with store.write() as conn:`` — a ``BEGIN IMMEDIATE`` transaction; an I/O error
        inside it discards the connection."""
        if self._closed:
            raise InvalidArgumentError("the database handle is closed")
        timeout = self.busy_timeout if busy_timeout is None else busy_timeout
        return WriteTransaction(self.connection, timeout, self.path, self._link.discard)

    def read(self) -> ReadScope:
        """``with store.read():`` — autocommit reads of :attr:`connection`, errors translated."""
        if self._closed:
            raise InvalidArgumentError("the database handle is closed")
        return ReadScope(self.path)

    def snapshot(self) -> ReadTransaction:
        """``with store.snapshot() as conn:`` — several reads from one snapshot (keep short)."""
        if self._closed:
            raise InvalidArgumentError("the database handle is closed")
        return ReadTransaction(self.connection, self.path)

    # -- the clock -------------------------------------------------------------------------

    def now(self) -> int:
        """Wall time in ms since the epoch, from the injected clock."""
        return self.clock.wall()

    def lease_now(self) -> int:
        """The lease clock in ms."""
        return self.clock.lease()

    @property
    def boot_id(self) -> str:
        """This boot's id (leases carry it)."""
        return self.clock.boot_id

    # -- background threads ----------------------------------------------------------------

    def sibling(self, *, busy_timeout: float | None = None) -> "Store":
        """A store on the same file with the same settings and clock, on its own connection
        (opened on first use), for a background thread. It leaves checkpoints to the writers."""
        return Store(
            self.path,
            sync=self.sync,
            busy_timeout=self.busy_timeout if busy_timeout is None else busy_timeout,
            create=False,
            file_mode=self.file_mode,
            clock=self.clock,
            check_schema=False,
            autocheckpoint=False,
        )
