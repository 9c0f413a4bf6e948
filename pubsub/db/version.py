"""The schema version: what this code writes, and what a file says it holds.

Kept apart from :mod:`pubsub.db.schema` (which opens and upgrades) and
:mod:`pubsub.db.migrations` (which holds the steps), so neither imports the other.
"""

import sqlite3

__all__ = ["SCHEMA_VERSION", "user_version"]

#: The schema version this code writes and expects. A test checks it against the files.
SCHEMA_VERSION = 6


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file header."""
    from pubsub.db.pragmas import pragma_get

    return int(pragma_get(conn, "user_version"))
