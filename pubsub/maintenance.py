"""Maintenance of the file: consistency checks, vacuum, online backup."""

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple

from pubsub.db import catalog, log, pragmas
from pubsub.db import retention as sql
from pubsub.db.connection import translate_error
from pubsub.db.log import log_table
from pubsub.db.store import Store
from pubsub.db.transaction import ReadTransaction
from pubsub.errors import AlreadyExistsError, StorageError
from pubsub.words import counted

_LOG_TABLE = re.compile(r"^log_(\d+)_(\d+)$")


#: The checks ``db check`` runs, in order; a :class:`Problem`'s ``check`` is one of them.
CHECKS: tuple[str, ...] = (
    "integrity",  # PRAGMA integrity_check (or quick_check)
    "foreign_keys",  # PRAGMA foreign_key_check
    "tables",  # every partition has its log table, and no log table lacks its partition
    "counters",  # record and byte counters match the log
    "offsets",  # stored offsets lie in [log_start_offset, next_offset)
    "time_index",  # the time index points below next_offset
)


class Problem(NamedTuple):
    """Something ``db check`` found wrong."""

    check: str  # one of CHECKS
    where: str
    detail: str


def check(store: Store, *, quick: bool = False) -> list[Problem]:
    """SQLite's integrity check plus pubsub's own invariants, in one consistent snapshot.

    For each partition: its table exists; ``record_count`` and ``byte_count`` match what is
    stored; stored offsets lie in ``[log_start_offset, next_offset)``; the time index points
    below ``next_offset``. No log table lacks its partition; foreign keys hold.
    """
    problems: list[Problem] = []
    conn = store.connection
    with ReadTransaction(conn, store.path):
        for (line,) in pragmas.pragma_list(conn, "quick_check" if quick else "integrity_check"):
            if line != "ok":
                problems.append(Problem("integrity", "database", str(line)))
        for table, rowid, parent, _ in pragmas.pragma_list(conn, "foreign_key_check"):
            problems.append(
                Problem("foreign_keys", str(table), f"row {rowid} refers to a missing {parent}")
            )
        tables = pragmas.sqlite_master_list(conn, "table")
        expected: set[str] = set()
        for topic in catalog.topic_list(conn):
            for part in catalog.partitions_get(conn, topic.topic_id):
                where = f"{topic.name}[{part.partition}]"
                table = log_table(topic.topic_id, part.partition)
                expected.add(table)
                if table not in tables:
                    problems.append(Problem("tables", where, f"table {table} is missing"))
                    continue
                records, size, low, high = sql.records_sum(conn, topic.topic_id, part.partition)
                if records != part.record_count or size != part.byte_count:
                    problems.append(
                        Problem(
                            "counters",
                            where,
                            f"counters say {counted(part.record_count, 'record')} / "
                            f"{counted(part.byte_count, 'byte')}, the log holds "
                            f"{counted(records, 'record')} / {counted(size, 'byte')}",
                        )
                    )
                if high is not None and high >= part.next_offset:
                    problems.append(
                        Problem(
                            "offsets",
                            where,
                            f"offset {high} is stored but next_offset is {part.next_offset}: "
                            "it would be handed out again",
                        )
                    )
                if low is not None and low < part.log_start_offset:
                    problems.append(
                        Problem(
                            "offsets",
                            where,
                            f"offset {low} is stored below log_start_offset "
                            f"{part.log_start_offset}",
                        )
                    )
                if part.log_start_offset > part.next_offset:
                    problems.append(
                        Problem("offsets", where, "log_start_offset is past next_offset")
                    )
                bad_index = log.time_index_count(
                    conn, topic.topic_id, part.partition, part.next_offset
                )
                if bad_index:
                    problems.append(
                        Problem(
                            "time_index",
                            where,
                            f"{counted(bad_index, 'entry', 'entries')} "
                            f"{'points' if bad_index == 1 else 'point'} past next_offset",
                        )
                    )
            if topic.partition_count != len(catalog.partitions_get(conn, topic.topic_id)):
                problems.append(
                    Problem("tables", topic.name, "partition rows do not match partition_count")
                )
        for table in sorted(tables):
            if _LOG_TABLE.match(table) and table not in expected:
                problems.append(Problem("tables", table, "log table of no partition"))
    return problems


Progress = Callable[[float, float], None]


@contextlib.contextmanager
def _watch_size(path: str, expected: int, progress: Progress | None) -> Iterator[None]:
    """Report the growing size of ``path`` against ``expected`` while one statement runs."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            progress(min(size, expected), expected)

    watcher = threading.Thread(target=watch, name="pubsub-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    progress(expected, expected)


def vacuum(store: Store, *, full: bool = False, progress: Progress | None = None) -> int:
    """Return free pages to the file system; with ``full``, rebuild the file (VACUUM).

    The incremental form runs in short transactions beside writers; a full VACUUM needs the
    database to itself for its duration and up to twice its size in free space. Returns the
    number of pages freed.
    """
    from pubsub.space import incremental_vacuum

    conn = store.connection
    if not full:
        freed = incremental_vacuum(store)
        pragmas.wal_checkpoint(conn, store.path)  # the file shrinks when the WAL is checkpointed
        return freed
    before = int(pragmas.pragma_get(conn, "page_count"))
    try:
        pragmas.database_vacuum(conn)
    except sqlite3.Error as exc:
        raise translate_error(exc, path=store.path) from exc
    return before - int(pragmas.pragma_get(conn, "page_count"))


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Delete ``.NAME.PID.tmp`` files left by backups whose process died (SIGKILL, power cut)."""
    prefix, suffix = f".{name}.", ".tmp"
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        pid = entry[len(prefix) : -len(suffix)]
        if not (entry.startswith(prefix) and entry.endswith(suffix) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that backup is still running (or the pid was reused): leave it
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, entry))


def backup(
    store: Store, target: str, *, mode: int = 0o600, progress: Progress | None = None
) -> int:
    """Write a consistent, compacted copy of the database to ``target``; return its size.

    Uses ``VACUUM INTO``, which reads one snapshot (writers go on) and writes a new file; the
    copy is made under a temporary name, synced, and renamed into place, so ``target`` is
    either complete or absent. A plain ``cp`` of a live WAL database can miss committed
    transactions or copy a torn file. A temporary file left by a backup that was killed is
    removed by the next backup to the same target. ``progress`` is called with (bytes
    written, bytes expected).
    """
    target = os.path.abspath(target)
    if os.path.exists(target):
        raise AlreadyExistsError(
            f"{target} already exists", hint="choose a new file name, or remove it first"
        )
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise StorageError(f"directory {directory} does not exist")
    _remove_stale_temporaries(directory, os.path.basename(target))
    temporary = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.tmp")
    try:
        with _watch_size(temporary, pragmas.pages_used(store.connection), progress):
            pragmas.database_copy(store.connection, temporary)
        os.chmod(temporary, mode)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, target)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except sqlite3.Error as exc:
        raise translate_error(exc, path=store.path) from exc
    except OSError as exc:
        raise StorageError(f"cannot write the backup {target}: {exc.strerror}") from exc
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return os.stat(target).st_size
