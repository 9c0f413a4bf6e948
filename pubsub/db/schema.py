"""The schema version this code expects, and the cheap check made at every open.

The migration runner (:mod:`pubsub.db.migrations`) is imported only when the file is not
current, so opening an up-to-date database costs one PRAGMA read and no file listing.
"""

from __future__ import annotations

import sqlite3

from pubsub.db.version import SCHEMA_VERSION, user_version
from pubsub.errors import SchemaTooNewError


def ensure_current(conn: sqlite3.Connection, *, busy_timeout: float, path: str = "") -> list[int]:
    """Migrate the database to :data:`SCHEMA_VERSION` if needed; return versions applied.

    Raises :class:`~pubsub.errors.SchemaTooNewError` for a file written by a newer version.
    """
    try:
        current = user_version(conn)
    except sqlite3.Error as exc:
        from pubsub.db.connection import translate_error

        raise translate_error(exc, path=path) from exc
    if current == SCHEMA_VERSION:
        return []
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database has schema version {current}, newer than this pubsub "
            f"understands ({SCHEMA_VERSION})"
        )
    from pubsub.db.migrations import schema_migrate

    return schema_migrate(conn, busy_timeout=busy_timeout, path=path)
