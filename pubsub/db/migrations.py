"""Forward-only schema migrations tracked by ``PRAGMA user_version``.

Migration ``N`` is the file ``migrations/NNNN_name.sql``. Each is applied inside its own
``BEGIN IMMEDIATE`` transaction together with the ``user_version`` bump and a row in
``schema_migrations``; the version is re-read after taking the lock, so when two processes open
a new file at once one migrates it and the other finds the work done. A database whose version
is newer than this code is refused. Migrations hold no PRAGMAs (those belong to
:mod:`pubsub.db.connection`).
"""

from __future__ import annotations

import re
import sqlite3
import time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

from pubsub.db.transaction import WriteTransaction
from pubsub.db.version import SCHEMA_VERSION, user_version
from pubsub.errors import SchemaError, SchemaTooNewError

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(NamedTuple):
    """One migration file: its version (from the file name), name and SQL text."""

    version: int
    name: str
    sql: str


def migrations_dir() -> Traversable:
    """Where the migration files are: inside the installed package, else the source tree."""
    packaged = resources.files("pubsub").joinpath("migrations")
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent.parent / "migrations"
    if source.is_dir():
        return source
    raise SchemaError(
        "the schema migrations are missing from this installation",
        hint="reinstall pubsub-sqlite",
    )


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Read and check the migration files: versions must run 1, 2, 3 … without gaps."""
    directory = directory if directory is not None else migrations_dir()
    found: list[Migration] = []
    for entry in directory.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise SchemaError(
                f"migration files are not contiguous: expected {expected:04d}, "
                f"found {migration.version:04d}_{migration.name}.sql"
            )
    return found


def split_statements(sql: str) -> list[str]:
    """Split a script into statements the way SQLite's shell does (triggers and strings safe).

    ``executescript`` cannot be used: it commits any open transaction first.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.rstrip(";").strip():
                statements.append(statement)
            buffer = ""
    if buffer.strip() and not _only_comments(buffer):
        raise SchemaError(f"incomplete SQL statement at the end of a migration: {buffer[:60]!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def schema_migrate(
    conn: sqlite3.Connection,
    *,
    busy_timeout: float = 10.0,
    target: int = SCHEMA_VERSION,
    migrations: list[Migration] | None = None,
    path: str = "",
) -> list[int]:
    """Bring the database up to ``target``; return the versions this call applied.

    The fast path (already current) is one PRAGMA read and touches no file.
    """
    current = user_version(conn)
    if current == target:
        return []
    if current > target:
        raise SchemaTooNewError(
            f"the database has schema version {current}, newer than this pubsub "
            f"understands ({target})"
        )
    pending = migrations if migrations is not None else load_migrations()
    applied: list[int] = []
    for migration in pending:
        if migration.version > target:
            break
        with WriteTransaction(conn, busy_timeout, path):
            current = user_version(conn)  # re-read under the write lock
            if current >= migration.version:
                continue
            if current == 0 and _has_foreign_tables(conn):
                raise SchemaError(
                    "this SQLite file is not a pubsub database (it has other tables)",
                    hint="pass the path of a pubsub database, or a new file, with --db",
                )
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time_ns() // 1_000_000),
            )
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        applied.append(migration.version)
    final = user_version(conn)
    if final > target:
        raise SchemaTooNewError(
            f"the database has schema version {final}, newer than this pubsub "
            f"understands ({target})"
        )
    return applied


def _has_foreign_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return bool(row[0])
