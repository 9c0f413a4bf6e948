"""Room to delete: freeing space on a disk that is full, or nearly.

Deleting needs space before it gives any back. Every write goes to the WAL first, and only a
checkpoint copies it into the database file, which must then hold every page the WAL holds;
deleted pages leave the file only after a vacuum and another checkpoint. Measured with this
SQLite (built with ``SECURE_DELETE``): deleting small records by range appends as many bytes
to the WAL as it deletes, ``secure_delete=FAST`` included; deleting a whole table (or every
row, with no WHERE) under FAST appends almost nothing; a vacuum appends what it moves.

So work that frees space (a retention sweep, ``topic truncate``, ``topic delete``) does it in
this order when the file system is low on space (below
:data:`~pubsub.db.files.LOW_SPACE_BYTES`), with :class:`Room`:

1. decide first whether anything will be deleted, and only then release the reserve file
   (``<db>-reserve``) when the disk is (nearly) full;
2. complete a checkpoint, if the database file can grow to hold it (one that runs out of
   space halfway has filled the disk for nothing), and truncate the WAL;
3. delete in transactions sized by bytes to a quarter of the room left, each followed by
   such a checkpoint, so that the WAL never needs more than the free space;
4. vacuum in steps of that size, each followed by a checkpoint, which gives the pages back;
5. put the reserve back as soon as the disk has room for it and as much again.

Automatic checkpoints are off on the connection meanwhile (a passive one could grow the file
into the space the deletions need), and ``secure_delete`` is ``FAST`` (freed pages are not
zeroed through the WAL). A write that still fails for lack of space is retried with the
reserve released, then with smaller transactions, and fails with
:class:`~pubsub.errors.StorageFullError` when nothing is left to try.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from pubsub.db.connection import wal_tune
from pubsub.db.files import (
    LOW_SPACE_BYTES,
    RESERVE_BYTES,
    free_bytes,
    release_reserve,
    reserve_size,
    restore_reserve,
)
from pubsub.db.pragmas import (
    checkpoint_growth,
    database_trim,
    pragma_get,
    pragma_set,
    wal_checkpoint,
)
from pubsub.db.store import Store
from pubsub.errors import StorageError, StorageFullError

_T = TypeVar("_T")

#: Bytes of records one deleting transaction removes when space is plentiful (its WAL frames
#: are about as many bytes, in line with SQLite's 4 MiB between checkpoints).
DEFAULT_TXN_BYTES = 4 * 1024 * 1024
#: The smallest budget of a deleting transaction on a full disk (it deletes one record at least).
MIN_TXN_BYTES = 16 * 1024
#: Space left free beyond what a checkpoint needs (file-system metadata).
CHECKPOINT_MARGIN = 64 * 1024
#: Each failure for lack of space divides the budget by this much more.
_SHRINK = 4
_MAX_DIVISOR = 256


class Room:
    """The space one operation needs to delete, on a disk that may be full.

    Use :meth:`start` once the operation knows that it will delete something, run its writes
    with :meth:`run`, call :meth:`settle` after each, :meth:`vacuum` at the end, and
    :meth:`close` in a ``finally``. Outside low-space mode every method but :meth:`run` does
    (almost) nothing.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.path
        self.enabled = self.path != ":memory:"
        #: Low-space mode: the file system had less than LOW_SPACE_BYTES free, or a write failed.
        self.low = False
        #: This operation released the reserve (all of it).
        self.released = False
        #: The file system had less than the reserve's size free at the start (after the first
        #: checkpoint, if one could complete).
        self.full = False
        self._prepared: sqlite3.Connection | None = None
        self._secure: int | None = None
        self._divisor = _SHRINK
        if self.enabled:
            restore_reserve(self.path)  # an earlier operation may have left it out

    # -- mode --------------------------------------------------------------------------------

    def start(self, *, deletes: bool = True, clears: bool = False) -> None:
        """Enter low-space mode if the file system is low on space; with ``deletes`` (the
        caller knows it will delete something) release the reserve if the disk is full.

        ``clears``: every deletion empties whole partitions or drops tables, which needs
        almost no room. Otherwise, when even the reserve could not make room for the
        checkpoint that must come first, raises :class:`~pubsub.errors.StorageFullError`
        without releasing it (deleting by range would only fill the disk further).
        """
        if not self.enabled:
            return
        free = free_bytes(self.path)
        if free is None:
            return
        self.full = free < RESERVE_BYTES
        if free < LOW_SPACE_BYTES:
            self._enter()
            if self.settle():
                free = free_bytes(self.path) or 0
                self.full = free < RESERVE_BYTES
            if deletes and not clears:
                self._check_feasible(free)
            if deletes and (self.full or not checkpoint_fits(self.prepare(), self.path)):
                self.release()
                self.settle()

    def _check_feasible(self, free: int) -> None:
        growth = checkpoint_growth(self.prepare(), self.path)
        room = free + reserve_size(self.path) - CHECKPOINT_MARGIN
        if growth <= room:
            return
        missing = growth - room
        raise StorageFullError(
            f"no room to win space back: the WAL of {self.path} holds {_mib(growth)} that the "
            f"database file must take before anything can be deleted, and the disk has "
            f"{_mib(max(0, room))} (with the reserve)",
            hint=f"free {_mib(missing)} on the file system outside the database, or empty "
            "whole partitions ('pubsub topic truncate TOPIC' without --before, or 'pubsub "
            "topic delete'), which needs no room",
        )

    def _enter(self) -> None:
        self.low = True
        self.prepare()

    def prepare(self) -> sqlite3.Connection:
        """The store's connection, set up for low-space mode (again after a reconnect: the
        store replaces a connection that saw an I/O error)."""
        conn = self.store.connection
        if self.low and conn is not self._prepared:
            if self._secure is None:
                self._secure = int(pragma_get(conn, "secure_delete"))
            pragma_set(conn, "secure_delete", "FAST")
            pragma_set(conn, "wal_autocheckpoint", 0)
            self._prepared = conn
        return conn

    def release(self) -> bool:
        """Delete the reserve file so that its space can be used; True if there was one."""
        if not self.enabled:
            return False
        freed = release_reserve(self.path) > 0
        self.released = self.released or freed
        return freed

    def borrow(self, nbytes: int) -> bool:
        """Release ``nbytes`` of the reserve for a small write; True if any was there."""
        return self.enabled and release_reserve(self.path, nbytes) > 0

    # -- writes ------------------------------------------------------------------------------

    def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(conn)`` in a write transaction, retried while :meth:`on_full` can help."""
        while True:
            self.prepare()
            try:
                with self.store.write() as conn:
                    return work(conn)
            except StorageFullError:
                if not self.on_full():
                    raise

    def on_full(self) -> bool:
        """A write failed for lack of space: make more room; False when nothing is left to try.

        In turn: enter low-space mode (and complete a checkpoint if one fits), release the
        reserve, then divide the transactions' budget by four, a few times.
        """
        if not self.enabled:
            return False
        if not self.low:
            self._enter()
            self.settle()
            return True
        if self.release():
            self.settle()
            return True
        if self._divisor < _MAX_DIVISOR:
            self._divisor *= _SHRINK
            self.settle()
            return True
        return False

    def budget(self, normal: int = DEFAULT_TXN_BYTES) -> int:
        """Bytes of records the next deleting transaction may remove."""
        if not self.low:
            return normal
        conn = self.prepare()
        free = free_bytes(self.path) or 0
        room = free - checkpoint_growth(conn, self.path) - CHECKPOINT_MARGIN
        return max(MIN_TXN_BYTES, min(normal, room // self._divisor))

    def settle(self) -> bool:
        """In low-space mode, after a write: checkpoint and truncate the WAL if the database
        file has room to take it all, then put the reserve back if the disk has room for it.
        True if the WAL was checkpointed."""
        if not self.low:
            return False
        conn = self.prepare()
        if not checkpoint_fits(conn, self.path):
            return False
        try:
            done = wal_checkpoint(conn, self.path)
        except StorageError:
            return False
        if done:
            restore_reserve(self.path)
        return done

    def vacuum(self, progress: Callable[[float, float], None] | None = None) -> int:
        """Return free pages to the file system, in steps that fit; the pages freed.

        In low-space mode each step moves at most a transaction's budget of pages and is
        checkpointed; a step that cannot find room ends the vacuum (what was freed stays).
        """
        conn = self.prepare()
        page_size = int(pragma_get(conn, "page_size"))
        freed = 0
        total = int(pragma_get(conn, "freelist_count"))
        while True:
            conn = self.prepare()
            before = int(pragma_get(conn, "freelist_count"))
            if before == 0:
                break
            step = max(16, self.budget(8 * 1024 * 1024) // page_size)
            try:
                database_trim(conn, step, self.store.busy_timeout)
            except StorageFullError:
                if not self.on_full():
                    break
                continue
            after = int(pragma_get(conn, "freelist_count"))
            freed += before - after
            self.settle()
            if progress is not None:
                progress(min(freed, total), max(total, freed))
            if after >= before:
                break
        return freed

    def close(self) -> None:
        """Put the connection's settings and, if there is room, the reserve back."""
        if not self.enabled:
            return
        conn = self.store.live
        if self._prepared is not None and conn is self._prepared:
            # An I/O error may have closed it meanwhile: then there is nothing to restore.
            with contextlib.suppress(sqlite3.Error):
                pragma_set(conn, "secure_delete", self._secure or 0)
                wal_tune(conn, self.path)
        self._prepared = None
        restore_reserve(self.path)


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):.1f} MiB"


def checkpoint_fits(conn: sqlite3.Connection, path: str) -> bool:
    """True when the database file has room to grow by all a checkpoint may copy into it."""
    free = free_bytes(path)
    return free is not None and checkpoint_growth(conn, path) + CHECKPOINT_MARGIN <= free


def incremental_vacuum(
    store: Store,
    pages_per_step: int = 2048,
    progress: Callable[[float, float], None] | None = None,
) -> int:
    """Return free pages to the file system in short steps; the number of pages freed.

    ``progress`` is called with (pages freed, free pages at the start) after each step.
    """
    conn = store.connection
    freed = 0
    total = int(pragma_get(conn, "freelist_count"))
    while True:
        before = int(pragma_get(conn, "freelist_count"))
        if before == 0:
            return freed
        database_trim(conn, pages_per_step, store.busy_timeout)
        after = int(pragma_get(conn, "freelist_count"))
        freed += before - after
        if progress is not None:
            progress(min(freed, total), max(total, freed))
        if after >= before:
            return freed


def cap_wal(store: Store, cap: int) -> bool:
    """Checkpoint and truncate the WAL if it grew past ``cap`` bytes; True if it did."""
    try:
        size = os.stat(store.path + "-wal").st_size
    except FileNotFoundError:
        return False
    if size <= cap:
        return False
    return wal_checkpoint(store.connection, store.path)
