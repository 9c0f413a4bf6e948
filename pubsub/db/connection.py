"""Opening the database file: PRAGMAs, file creation, and translation of sqlite3 errors.

Every connection is opened with ``isolation_level=None`` (autocommit: sqlite3 never issues an
implicit BEGIN, so no read transaction is left open to pin the WAL) and gets the same PRAGMAs,
applied here and nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pubsub.db.files import (
    DEFAULT_FILE_MODE,
    DEFAULT_WAL_PAGES,
    LOW_SPACE_BYTES,
    LOW_SPACE_WAL_PAGES,
    RESERVE_BYTES,
    check_filesystem,
    create_reserve,
    free_bytes,
)
from pubsub.errors import (
    BusyError,
    CorruptDatabaseError,
    DatabaseNotFoundError,
    InvalidArgumentError,
    PubsubError,
    StorageError,
    StorageFullError,
    TopicDeletedError,
)

SyncMode = Literal["full", "normal"]
SYNC_MODES: tuple[SyncMode, ...] = ("full", "normal")

DEFAULT_BUSY_TIMEOUT = 10.0
# journal_size_limit: after a checkpoint, a WAL that grew past this is truncated back to it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: journal_size_limit when the file system is low on space: the WAL gives back what it grew.
LOW_SPACE_WAL_SIZE_LIMIT = 256 * 1024

# Primary result codes (sqlite3.h). Extended codes carry the primary code in their low byte.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_TOOBIG = 18
_SQLITE_NOTADB = 26
_SQLITE_IOERR_WRITE = 778  # SQLITE_IOERR | (3 << 8)


#: Messages of damage SQLite reports with its generic error code (SQLITE_ERROR).
_CORRUPT_SIGNS = ("not a database", "unsupported file format", "malformed database schema")


def translate_error(exc: sqlite3.Error, *, path: str = "") -> PubsubError:
    """Map a sqlite3 exception to the pubsub error it means.

    Disk-full arrives either as ``SQLITE_FULL`` or, under a file-size limit (``EFBIG``), as
    ``SQLITE_IOERR_WRITE``; both are reported as :class:`StorageFullError`.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    where = f" ({path})" if path else ""
    if text.startswith("no such table: log_"):
        return TopicDeletedError(f"a topic was deleted while in use{where}")
    if text.startswith(("no such table: ", "no such column: ")):
        # The schema was checked when the file was opened: a pubsub table or column missing
        # now means the file's schema pages are damaged (or it was rewritten underneath).
        return CorruptDatabaseError(f"the database's schema is damaged{where}: {text}")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or text.startswith("database is locked"):
        return BusyError(f"database is locked by another writer{where}")
    if primary in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or any(sign in text for sign in _CORRUPT_SIGNS):
        return CorruptDatabaseError(f"not a usable SQLite database{where}: {text}")
    if primary == _SQLITE_FULL or code == _SQLITE_IOERR_WRITE:
        return StorageFullError(f"no space left to write the database{where}: {text}")
    if primary == _SQLITE_IOERR:
        return StorageError(f"I/O error on the database{where}: {text}")
    if primary == _SQLITE_READONLY:
        return StorageError(
            f"the database is read-only{where}: {text}",
            hint="check the permissions of the file, its -wal and -shm files and its directory",
        )
    if primary == _SQLITE_CANTOPEN:
        return StorageError(
            f"cannot open the database{where}: {text}",
            hint="check that the directory exists and that this user may read and write the "
            "database file and its directory (SQLite creates -wal and -shm files there)",
        )
    if primary == _SQLITE_TOOBIG or isinstance(exc, sqlite3.DataError):
        return InvalidArgumentError(f"value too large for SQLite{where}: {text}")
    return PubsubError(f"unexpected SQLite error{where}: {text}")


def undecodable_error(exc: UnicodeDecodeError) -> PubsubError | None:
    """The error a damaged file really is, when sqlite3 could not decode SQLite's message.

    SQLite quotes the damaged schema text in "malformed database schema" messages; when those
    bytes are not UTF-8, Python's sqlite3 raises UnicodeDecodeError instead of its own error.
    None for any other UnicodeDecodeError (which is not the file's fault).
    """
    raw = exc.object
    if not isinstance(raw, bytes) or not raw.startswith(b"malformed database schema"):
        return None
    text = raw.decode("utf-8", "backslashreplace")
    return CorruptDatabaseError(f"not a usable SQLite database: {text}")


@contextmanager
def sqlite_errors(path: str = "") -> Iterator[None]:
    """Translate any sqlite3 exception raised inside the block (a slow-path helper)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate_error(exc, path=path) from exc


def jitter_sleep(low: float, high: float) -> None:
    """Sleep a pseudo-random time in [low, high) so that retrying processes spread out."""
    fraction = int.from_bytes(os.urandom(2), "little") / 65536
    time.sleep(low + (high - low) * fraction)


def _create_file(path: str, mode: int) -> bool:
    """Create an empty database file with ``mode``; return True if this call created it.

    SQLite would create it with 0644 minus the umask; creating it first fixes the mode of the
    database and, because SQLite copies it, of the -wal and -shm files too.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    except FileNotFoundError as exc:
        raise StorageError(
            f"cannot create the database {path}: the directory does not exist",
            hint="create the directory first or pass another --db path",
        ) from exc
    except PermissionError as exc:
        raise StorageError(
            f"cannot create the database {path}: permission denied",
            hint="check the permissions of the directory",
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise StorageFullError(f"no space left to create {path}") from exc
        raise StorageError(
            f"cannot create the database {path}: {exc.strerror}",
            hint="check that the directory is writable and its file system is mounted read-write",
        ) from exc
    try:
        os.fchmod(fd, mode)  # the umask must not narrow (or widen) the configured mode
    finally:
        os.close(fd)
    _fsync_directory(path)
    return True


def _fsync_directory(path: str) -> None:
    """Make a newly created directory entry durable (a power cut must not lose the file)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def connect(
    path: str,
    *,
    sync: SyncMode = "full",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    create: bool = True,
    file_mode: int = DEFAULT_FILE_MODE,
    reserve_bytes: int = RESERVE_BYTES,
) -> sqlite3.Connection:
    """Open ``path`` with the project's PRAGMAs; create the file if ``create`` is true.

    A new file gets ``file_mode`` whatever the umask, and a ``<db>-reserve`` file of
    ``reserve_bytes`` (0 for none) that a retention sweep releases on a full disk. A file on a
    network file system is refused (see :mod:`pubsub.db.files`).

    The first connection to a new file also sets the PRAGMAs that only take effect before any
    table exists (``auto_vacuum``) and switches the file to WAL with ``synchronous=EXTRA``
    first, so that the rollback journal used for the switch is deleted durably (a power cut
    right after creation must not resurrect it and lose the schema).
    """
    if sync not in SYNC_MODES:
        raise InvalidArgumentError(
            f"unknown sync mode {sync!r}", hint="use 'full' (the default) or 'normal'"
        )
    memory = path == ":memory:"
    created = False
    if not memory:
        if os.path.isdir(path):
            raise InvalidArgumentError(
                f"{path} is a directory", hint="pass the path of a database file"
            )
        check_filesystem(path)
        if not os.path.exists(path):
            if not create:
                raise DatabaseNotFoundError(
                    f"database {path} does not exist",
                    hint="create a topic first ('pubsub topic create NAME') or pass --db",
                )
            created = _create_file(path, file_mode)
            if created:
                create_reserve(path, file_mode, reserve_bytes)
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout, cached_statements=512
        )
    except sqlite3.Error as exc:
        raise translate_error(exc, path=path) from exc
    try:
        # The first statement reads the schema: a damaged one fails here.
        _configure(conn, sync=sync, busy_timeout=busy_timeout, memory=memory, new=created)
        if not memory:
            wal_tune(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise translate_error(exc, path=path) from exc
    except UnicodeDecodeError as exc:
        conn.close()
        corrupt = undecodable_error(exc)
        if corrupt is None:
            raise
        raise corrupt from exc
    except BaseException:
        conn.close()
        raise
    return conn


class Reconnecting:
    """One connection that is replaced, never reused, after a write failed with an I/O error.

    SQLite's advice after ``SQLITE_IOERR`` is to treat the connection as suspect; a holder
    calls :meth:`discard` (``WriteTransaction`` does, given ``on_storage_error=discard``) and
    :meth:`get` opens a new connection on the next use. Used by the Broker and by the
    consumer's background threads, which keep their own connections.
    """

    __slots__ = ("_kwargs", "current", "path")

    def __init__(self, path: str, **kwargs: object) -> None:
        self.path = path
        self._kwargs = kwargs
        #: The open connection, or None after :meth:`discard` until the next :meth:`get`.
        self.current: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        """The open connection, opened now if there is none (a later open never creates)."""
        conn = self.current
        if conn is None:
            conn = self.current = connect(self.path, **self._kwargs)  # type: ignore[arg-type]
            self._kwargs["create"] = False
        return conn

    def discard(self) -> None:
        """Close the connection without trusting it again (errors closing it are ignored)."""
        conn, self.current = self.current, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _configure(
    conn: sqlite3.Connection, *, sync: SyncMode, busy_timeout: float, memory: bool, new: bool
) -> None:
    if not memory:
        # Reading page_count is the first access to the file: a non-database fails here.
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        if new or page_count == 0:
            conn.execute("PRAGMA synchronous=EXTRA")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        _retry_busy(lambda: _set_wal(conn), busy_timeout)
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")


def wal_tune(conn: sqlite3.Connection, path: str) -> bool:
    """Checkpoint often while the file system is low on space; True when it is.

    SQLite checkpoints after a commit leaves 1,000 pages (4 MiB) in the WAL. A checkpoint
    must copy them all into the database file, which grows to hold the new ones: on a disk
    that fills up, the last checkpoint fails halfway and leaves up to that much that only a
    complete checkpoint can bring back, more than the reserve gives. Below
    :data:`~pubsub.db.files.LOW_SPACE_BYTES` free, a checkpoint runs every
    :data:`~pubsub.db.files.LOW_SPACE_WAL_PAGES` pages instead and the WAL is truncated back
    to 256 KiB after it, so that retention can always complete one (measured on a 6 MiB disk:
    4,800 records of 1,000 bytes fit instead of 2,100, and every retention run on the full
    disk freed it; producing is 13-23 % slower meanwhile).
    Costs one ``statvfs``; producers call it again as they write (see ``Broker``).
    """
    free = free_bytes(path)
    low = free is not None and free < LOW_SPACE_BYTES
    conn.execute(f"PRAGMA wal_autocheckpoint={LOW_SPACE_WAL_PAGES if low else DEFAULT_WAL_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={LOW_SPACE_WAL_SIZE_LIMIT if low else WAL_SIZE_LIMIT}")
    return low


def _set_wal(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(
            f"could not switch the database to WAL mode (journal_mode is {mode})",
            hint="WAL needs shared memory: use a local file system, not a network share",
        )


def _retry_busy(action: object, timeout: float) -> None:
    """Run ``action`` until it stops failing with SQLITE_BUSY or ``timeout`` passes.

    Some lock conflicts return SQLITE_BUSY at once without calling the busy handler (a
    connection running WAL recovery, the last connection deleting the WAL on close, two
    connections switching a new file to WAL together), so a bounded retry with jitter covers
    them.
    """
    assert callable(action)
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            err = translate_error(exc)
            if not isinstance(err, BusyError) or time.monotonic() >= deadline:
                raise
        jitter_sleep(0.001, 0.005)
