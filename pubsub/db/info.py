"""Read-only facts about the database file (for ``pubsub db info``)."""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING, NamedTuple

from pubsub.db.pragmas import pragma_get

if TYPE_CHECKING:
    from pubsub.db.store import Store


class FileStats(NamedTuple):
    """Sizes and settings of the database file."""

    file_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int
    journal_mode: str
    synchronous: str
    auto_vacuum: str
    user_version: int
    tables: int


_SYNC_NAMES = {0: "off", 1: "normal", 2: "full", 3: "extra"}
_VACUUM_NAMES = {0: "none", 1: "full", 2: "incremental"}


def _size(path: str) -> int:
    # os.stat never opens the file: opening and closing a database file would drop this
    # process's POSIX locks on it.
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def file_stats(conn: sqlite3.Connection, path: str) -> FileStats:
    """Sizes (from ``stat``) and PRAGMA settings of the open database."""
    return FileStats(
        file_bytes=_size(path),
        wal_bytes=_size(path + "-wal"),
        page_size=int(pragma_get(conn, "page_size")),
        page_count=int(pragma_get(conn, "page_count")),
        freelist_count=int(pragma_get(conn, "freelist_count")),
        journal_mode=str(pragma_get(conn, "journal_mode")),
        synchronous=_SYNC_NAMES.get(int(pragma_get(conn, "synchronous")), "unknown"),
        auto_vacuum=_VACUUM_NAMES.get(int(pragma_get(conn, "auto_vacuum")), "unknown"),
        user_version=int(pragma_get(conn, "user_version")),
        tables=_table_count(conn),
    )


def _table_count(conn: sqlite3.Connection) -> int:
    # sqlite-utils does the schema introspection of admin commands; it stays off the hot path.
    import sqlite_utils

    return len(sqlite_utils.Database(conn).table_names())


def topics_count(conn: sqlite3.Connection) -> int:
    """How many topics the database holds."""
    return int(conn.execute("SELECT count(*) FROM topics").fetchone()[0])


def database_counts(store: Store) -> tuple[FileStats, int]:
    """:func:`file_stats` and the number of topics, read through ``store``."""
    with store.read():
        return file_stats(store.connection, store.path), topics_count(store.connection)
