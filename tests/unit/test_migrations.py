"""Schema migrations: files, ordering, the runner, refusal of newer or foreign databases."""

import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.migrations import (
    Migration,
    load_migrations,
    migrations_dir,
    schema_migrate,
    split_statements,
)
from pubsub.db.schema import SCHEMA_VERSION, user_version
from pubsub.errors import SchemaError, SchemaTooNewError


def test_files_are_contiguous_and_match_the_code() -> None:
    found = load_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[-1].version == SCHEMA_VERSION
    for m in found:
        assert "PRAGMA" not in m.sql.upper(), f"{m.name}: PRAGMAs belong to pubsub/db/connection.py"


def test_gap_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(SchemaError, match="not contiguous"):
        load_migrations(tmp_path)


def test_all_apply_on_memory() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    applied = schema_migrate(conn, busy_timeout=1)
    assert applied == list(range(1, SCHEMA_VERSION + 1))
    assert user_version(conn) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"topics", "partitions", "topic_configs", "group_offsets", "time_index"} <= tables
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == applied
    assert schema_migrate(conn, busy_timeout=1) == []  # already current: nothing to do
    conn.close()


def test_each_migration_is_atomic(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text(
        "CREATE TABLE schema_migrations (version, name, applied_ms);"
    )
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x);\nTHIS IS NOT SQL;")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    with pytest.raises(Exception, match="syntax error"):
        schema_migrate(conn, busy_timeout=1, target=2, migrations=load_migrations(tmp_path))
    # 0001 committed, 0002 rolled back entirely: no table b, version still 1.
    assert user_version(conn) == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'b'").fetchone()[0] == 0
    conn.close()


def test_split_statements_keeps_triggers_and_strings_whole() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'c;d';
        DELETE FROM t WHERE x = ';';
    END;
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_newer_database_is_refused(db_path: Path) -> None:
    Broker(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError) as info:
        Broker(db_path)
    assert info.value.exit_code == 6


def test_foreign_sqlite_file_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(SchemaError, match="not a pubsub database"):
        Broker(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 1  # untouched
    conn.close()


def test_migrations_dir_is_found() -> None:
    directory = migrations_dir()
    assert any(entry.name == "0001_initial.sql" for entry in directory.iterdir())


def test_migration_type_is_plain_data() -> None:
    m = Migration(1, "x", "SELECT 1;")
    assert m.version == 1 and m.sql == "SELECT 1;"


def test_a_version_4_file_upgrades_to_producer_state(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert schema_migrate(conn, busy_timeout=1, target=4) == [1, 2, 3, 4]
    conn.execute("INSERT INTO topics (name, partition_count, created_ms) VALUES ('old', 1, 0)")
    conn.execute("INSERT INTO partitions (topic_id, partition) VALUES (1, 0)")
    conn.execute(
        'CREATE TABLE log_1_0 ("offset" INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, '
        "key BLOB, value BLOB, headers TEXT)"
    )
    conn.close()
    with Broker(db_path) as broker:
        assert user_version(broker.services.store.connection) == SCHEMA_VERSION
        first = broker.produce("old", b"v", id="x")
        assert broker.produce("old", b"v", id="x") == first._replace(duplicate=True)
        assert broker.services.writer.new_producer_id() == 0
