"""PRAGMAs, the schema catalogue and whole-file statements (vacuum, copy, checkpoint).

Functions take a connection and never begin or commit, except :func:`database_trim`, which
runs its statement through :func:`pubsub.db.transaction.run_script_immediate` (an incremental
vacuum must be stepped to the end inside a write transaction of its own). PRAGMA names and
values are interpolated into the statement, so they are checked first: a name is an
identifier, a value an integer or a word.
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from pubsub.db.connection import translate_error

_NAME = re.compile(r"^[a-z_]+$")
_WORD = re.compile(r"^[A-Za-z_]+$")


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a PRAGMA name: {name!r}")
    return name


def pragma_get(conn: sqlite3.Connection, name: str) -> int | str:
    """The value of ``PRAGMA name`` (an integer, or text such as a journal mode)."""
    value = conn.execute(f"PRAGMA {_checked_name(name)}").fetchone()[0]
    return value if isinstance(value, int | str) else str(value)


def pragma_set(conn: sqlite3.Connection, name: str, value: int | str) -> None:
    """``PRAGMA name = value`` (the value an integer or a word such as ``FAST``)."""
    if isinstance(value, bool) or not (isinstance(value, int) or _WORD.match(value)):
        raise ValueError(f"not a PRAGMA value: {value!r}")
    conn.execute(f"PRAGMA {_checked_name(name)} = {value}")


def pragma_list(conn: sqlite3.Connection, name: str) -> list[tuple[Any, ...]]:
    """Every row ``PRAGMA name`` returns (``integrity_check``, ``foreign_key_check`` …)."""
    return [tuple(row) for row in conn.execute(f"PRAGMA {_checked_name(name)}")]


def sqlite_master_list(conn: sqlite3.Connection, kind: str = "table") -> set[str]:
    """Names of the schema's objects of one kind (``table``, ``index`` …)."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))
    return {str(name) for (name,) in rows}


def pages_used(conn: sqlite3.Connection) -> int:
    """Bytes of the pages that hold data (the file's pages less the free ones)."""
    pages = int(pragma_get(conn, "page_count"))
    free = int(pragma_get(conn, "freelist_count"))
    return (pages - free) * int(pragma_get(conn, "page_size"))


def database_vacuum(conn: sqlite3.Connection) -> None:
    """Rebuild the whole file (``VACUUM``): needs the database to itself meanwhile."""
    conn.execute("VACUUM")


def database_copy(conn: sqlite3.Connection, target: str) -> None:
    """Write a compacted copy of one snapshot of the database to ``target`` (``VACUUM INTO``)."""
    conn.execute("VACUUM INTO ?", (target,))


def database_trim(conn: sqlite3.Connection, pages: int, timeout: float) -> None:
    """Give up to ``pages`` free pages back to the file system (``PRAGMA incremental_vacuum``),
    in a write transaction of its own, waiting up to ``timeout`` seconds for the lock."""
    from pubsub.db.transaction import run_script_immediate

    run_script_immediate(conn, f"PRAGMA incremental_vacuum({int(pages)});", timeout)


def wal_checkpoint(conn: sqlite3.Connection, path: str = "") -> bool:
    """Checkpoint the whole WAL and truncate it to zero bytes; False if readers prevented it.

    A TRUNCATE checkpoint waits (busy handler) for writers, but cannot finish while another
    connection reads an old snapshot; it is then simply retried by the next caller.
    """
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        raise translate_error(exc, path=path) from exc
    return not busy


def checkpoint_growth(conn: sqlite3.Connection, path: str) -> int:
    """Bytes the database file may have to grow by for a checkpoint to complete.

    A checkpoint copies pages up to the database's size at the last commit; beyond the
    file's current end they need new space. A checkpoint that runs out of it fails halfway
    and has then filled the disk for nothing, so on a full disk check this first.
    """
    try:
        page_size = int(pragma_get(conn, "page_size"))
        pages = int(pragma_get(conn, "page_count"))
        size = os.stat(path).st_size
    except (sqlite3.Error, OSError):
        return 0
    return max(0, pages * page_size - size)
