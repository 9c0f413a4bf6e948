"""All SQL lives in pubsub.db, and its statements are named ``<table>_<verb>[_by_<key>]``.

Checked on the source with ``ast``:

* outside ``pubsub/db`` no code calls ``.execute``, ``.executemany`` or ``.executescript``,
  and no string constant reads as SQL (a statement keyword, case-insensitive, after optional
  whitespace, followed by what makes it a statement: ``DELETE FROM``, ``PRAGMA name`` …;
  docstrings are prose and not checked). ``pubsub/bench.py`` is the one named exception: its
  raw-``sqlite3`` baselines are what the project's own path is measured against;
* in ``pubsub/db`` every public module-level function whose body calls one of those methods
  itself is named after a table (or what stands for one: the log, a PRAGMA, the schema) and a
  verb, optionally ``_by_`` a key. Helpers that only call such functions are free to be
  named otherwise.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pubsub"

EXECUTE = frozenset({"execute", "executemany", "executescript"})

#: The raw-sqlite3 baselines of ``pubsub bench``: the one module outside pubsub/db with SQL.
BASELINES = frozenset({"bench.py"})

#: Files under pubsub/commands that still run SQL of their own (shell completion reads topic
#: and group names directly). Temporary: completion is moving behind the API, and this list
#: is then emptied. Paths relative to the package.
COMMANDS_STILL_WITH_SQL: frozenset[str] = frozenset()

#: Nouns a statement may be named after: tables, and what stands for one.
NOUNS = frozenset(
    {
        "topic",
        "topics",
        "partition",
        "partitions",
        "configs",
        "defaults",
        "group",
        "groups",
        "offsets",
        "member",
        "members",
        "assignments",
        "lease",
        "retention_runs",
        "time_index",
        "log",
        "record",
        "records",
        "keys",  # the keys of a partition's log
        "values",  # the values of a partition's log (raw output reads only them)
        "tombstones",  # records with a key and no value
        "compaction_indexes",  # the two indexes of a compacted partition's log
        "pragma",
        "schema",
        "sqlite_master",
        "database",  # the whole file: VACUUM, VACUUM INTO, incremental vacuum
        "wal",
        # queue mode: share groups, their partitions and their in-flight records
        "share_group",
        "share_groups",
        "share_partition",
        "share_partitions",
        "share_records",
        # producer state: producer ids and the batches producers wrote (idempotence)
        "producer_ids",
        "producer_state",
        # mirrors: the file's id, a destination's positions, a source's progress
        "identity",
        "mirror_positions",
        "mirror_progress",
    }
)

VERBS = frozenset(
    {
        "get",
        "list",
        "find",
        "count",
        "sum",
        "min",
        "max",
        "peek",
        "seek",
        "measure",
        "estimate",
        "survey",
        "poll",
        "chunk",
        "insert",
        "append",
        "update",
        "set",
        "put",
        "delete",
        "ensure",
        "bump",
        "resize",
        "commit",
        "renew",
        "expire",
        "take",
        "release",
        "retarget",
        "wait",
        "shrink",
        "settle",
        "clean",
        "prune",
        "create",
        "drop",
        "migrate",
        "vacuum",
        "copy",
        "trim",
        "checkpoint",
        "tune",
        # the life of a share group's in-flight record
        "scan",
        "acquire",
        "hold",
        "fill",
        "accept",
    }
)

#: Transaction control, which only pubsub/db/transaction.py does (BEGIN, COMMIT, a script
#: inside BEGIN IMMEDIATE … COMMIT): not statements about a table.
TRANSACTION_CONTROL = frozenset(
    {"db/transaction.py:begin_immediate", "db/transaction.py:run_script_immediate"}
)

_SQL = re.compile(
    r"""^\s*(?:
        SELECT\s+(?:\S[\s\S]*\bFROM\b|[\d'"(*]|count\(|max\(|min\(|sum\()
      | INSERT\s+(?:OR\s+\w+\s+)?INTO\b
      | UPDATE\s+\w+\s+SET\b
      | DELETE\s+FROM\b
      | PRAGMA\s+\w+(?:\.\w+)?\s*(?:$|;|=|\()
      | CREATE\s+(?:UNIQUE\s+|TEMP\s+|TEMPORARY\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b
      | DROP\s+(?:TABLE|INDEX|VIEW|TRIGGER)\b
      | VACUUM\s+INTO\b
      | (?-i:VACUUM)\s*;?\s*$
      | WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s*\(
    )""",
    re.IGNORECASE | re.VERBOSE,
)

_NAME = re.compile(
    rf"^(?P<noun>{'|'.join(sorted(NOUNS, key=len, reverse=True))})_(?P<verb>[a-z]+)"
    r"(?:_by_[a-z_]+)?$"
)


def looks_like_sql(text: str) -> bool:
    """True when ``text`` starts like an SQL statement."""
    return bool(_SQL.match(text))


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                ids.add(id(body[0].value))
    return ids


def _text(node: ast.JoinedStr) -> str:
    """An f-string's text with a placeholder name for each replacement field."""
    return "".join(
        part.value if isinstance(part, ast.Constant) else "x0"
        for part in node.values
        if isinstance(part, ast.Constant | ast.FormattedValue)
    )


def sql_outside_storage(source: str, filename: str = "<source>") -> list[str]:
    """Every ``.execute``-family call and SQL-looking string constant (f-strings included)
    in ``source``."""
    tree = ast.parse(source, filename=filename)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # checked as a whole, not piece by piece
            skip.update(id(part) for part in node.values)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and looks_like_sql(_text(node)):
            found.append(f"{filename}:{node.lineno}: {_text(node).strip()[:40]!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTE
        ):
            found.append(f"{filename}:{node.lineno}: .{node.func.attr}(")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and looks_like_sql(node.value)
        ):
            found.append(f"{filename}:{node.lineno}: {node.value.strip()[:40]!r}")
    return found


def _executes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in EXECUTE
        for node in ast.walk(function)
    )


def misnamed_statements(source: str, filename: str = "<source>") -> list[str]:
    """Public module-level functions of ``source`` that execute SQL under a name that is not
    ``<noun>_<verb>[_by_<key>]`` (nouns and verbs from the lists above)."""
    tree = ast.parse(source, filename=filename)
    bad: list[str] = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") or f"{filename}:{node.name}" in TRANSACTION_CONTROL:
            continue
        if not _executes(node):
            continue
        match = _NAME.match(node.name)
        if match is None or match.group("verb") not in VERBS:
            bad.append(f"{filename}:{node.lineno}: {node.name}")
    return bad


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _api_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if not _relative(path).startswith("db/") and _relative(path) not in BASELINES
    )


def test_no_sql_outside_storage() -> None:
    found: list[str] = []
    for path in _api_modules():
        if _relative(path) in COMMANDS_STILL_WITH_SQL:
            continue
        found += sql_outside_storage(path.read_text(), _relative(path))
    assert not found, "SQL outside pubsub/db (move it into a pubsub.db module):\n" + "\n".join(
        found
    )


def test_the_commands_exception_list_is_not_stale() -> None:
    """Every file still excepted does run SQL: one that stopped must leave the list."""
    for name in COMMANDS_STILL_WITH_SQL:
        path = PACKAGE / name
        assert path.exists(), f"{name} no longer exists: remove it from the list"
        assert sql_outside_storage(path.read_text(), name), (
            f"{name} runs no SQL any more: remove it from COMMANDS_STILL_WITH_SQL"
        )


def test_statements_are_named_after_their_table() -> None:
    bad: list[str] = []
    checked = 0
    for path in sorted((PACKAGE / "db").glob("*.py")):
        source = path.read_text()
        bad += misnamed_statements(source, _relative(path))
        checked += sum(
            isinstance(node, ast.FunctionDef) and _executes(node) for node in ast.parse(source).body
        )
    assert checked > 50  # the walk found the statements (it cannot pass on nothing)
    assert not bad, "name statements <table>_<verb>[_by_<key>]:\n" + "\n".join(bad)


def test_the_transaction_control_exceptions_exist() -> None:
    for entry in TRANSACTION_CONTROL:
        name, function = entry.split(":")
        tree = ast.parse((PACKAGE / name).read_text())
        assert any(
            isinstance(node, ast.FunctionDef) and node.name == function and _executes(node)
            for node in tree.body
        ), entry


# -- the checkers themselves ---------------------------------------------------------------


def test_the_sql_checker_reports_calls_and_statements() -> None:
    source = '''
"""Select records from a topic (a docstring: prose)."""

def names(conn):
    """Delete from the cache (prose as well)."""
    conn.execute("SELECT name FROM topics")
    return conn.executemany(QUERY, [])

QUERY = "  delete from group_offsets WHERE group_id = ?"
LATER = f"PRAGMA {name}"
HELP = "Delete a topic and its records."
'''
    found = sql_outside_storage(source, "bad.py")
    assert len(found) == 5, found
    assert sorted(int(line.split(":")[1]) for line in found) == [6, 6, 7, 9, 10], found


@pytest.mark.parametrize(
    "text",
    [
        "SELECT key, value FROM topic_configs",
        "select count(*) from time_index",
        "SELECT 1",
        "\n  INSERT INTO retention_runs (a) VALUES (?)",
        "insert or replace into t (a) values (1)",
        "UPDATE partitions SET next_offset = ?",
        "DELETE FROM consumer_groups WHERE group_id = ?",
        "PRAGMA freelist_count",
        "pragma secure_delete=FAST",
        "CREATE TABLE log_1_0 (x)",
        "create index if not exists i on t (k)",
        "DROP TABLE IF EXISTS log_1_0",
        "VACUUM",
        "PRAGMA user_version = 3",
        "PRAGMA incremental_vacuum(16);",
        "PRAGMA main.page_count",
        "vacuum into ?",
        "WITH recent AS (SELECT 1) SELECT * FROM recent",
    ],
)
def test_statements_look_like_sql(text: str) -> None:
    assert looks_like_sql(text)


@pytest.mark.parametrize(
    "text",
    [
        "Delete a topic and its records.",
        "select the partitions to read",
        "Update the committed view only on success",
        "Create a topic first",
        "drop the connection",
        "with --follow, wait for new records",
        "pragma",
        "vacuumed 3 pages",
        "vacuum",
        "PRAGMA quick_check instead of integrity_check.",
    ],
)
def test_prose_does_not(text: str) -> None:
    assert not looks_like_sql(text)


def test_the_naming_checker_reports_misnamed_statements() -> None:
    source = """
def append_state(conn):
    return conn.execute("SELECT 1").fetchone()

def topic_frobnicate(conn):
    conn.execute("SELECT 1")

def topics_get_by_name(conn, name):
    return conn.execute("SELECT 1", (name,)).fetchone()

def partitions_get_by(conn):
    conn.executemany("SELECT 1", [])

def helper(conn):
    return topics_get_by_name(conn, "x")

def _private(conn):
    conn.execute("SELECT 1")

def nested(conn):
    def inner():
        conn.execute("SELECT 1")
    return inner
"""
    bad = misnamed_statements(source, "db/bad.py")
    assert [entry.rsplit(": ", 1)[1] for entry in bad] == [
        "append_state",
        "topic_frobnicate",
        "partitions_get_by",
        "nested",
    ], bad
