"""Corrupted database files: every command fails cleanly or succeeds, never hangs or crashes.

A seed database (topics with partitions, multi-page log tables, group offsets, a live -wal file)
is copied and damaged: bytes flipped in random pages, pages zeroed, the file truncated, the
header overwritten, the -wal file damaged, the schema version raised, or the file replaced by
a SQLite database that is not pubsub's. Each copy then meets a representative set of
commands. Accepted outcomes: success, or a documented failure with an ``error:`` line (exit 6
for a corrupt or foreign file; 2, 3, 5 or 7 where that is what the damage looks like). Never a
traceback, an internal error (exit 1), a signal, or a hang.

The bulk runs in-process, in worker processes (one per core) so that a hang or a crash in C
code kills a worker, not the suite; a sample runs through the real console script.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pubsub import Broker
from tests.helpers import cli_env, run_cli
from tests.reliability.oracle import scale
from tests.reliability.test_hostile_input import DOCUMENTED, run_in_process

pytestmark = [pytest.mark.reliability, pytest.mark.cli]

COPIES = scale(1000, 10_000)
REAL_COPIES = scale(40, 400)
#: Commands run on each copy (drawn from COMMANDS per copy; all of them in a soak).
PER_COPY = scale(4, 10)
#: Seconds one command may take on a damaged copy (in-process timer; real processes: 3x).
CALL_TIMEOUT = 10.0

COMMANDS: list[list[str]] = [
    ["topic", "list"],
    ["topic", "describe", "t0"],
    ["consume", "t0", "-n", "5"],
    ["consume", "t1", "-g", "g0", "-n", "3"],
    ["produce", "t0", "hello"],
    ["group", "list"],
    ["stats"],
    ["db", "check"],
    ["retention", "run"],
    ["metrics"],
]

CORRUPTIONS = (
    "flip",
    "zero-page",
    "truncate",
    "header",
    "wal-flip",
    "newer-version",
    "foreign",
    "random-file",
)


def build_seed(directory: Path) -> tuple[Path, Path]:
    """A database with a live -wal: returns (db, wal) copies taken while it was open."""
    db = directory / "live.db"
    with Broker(db) as broker:
        broker.create_topic("t0", partitions=3)
        broker.create_topic("t1", partitions=2, config={"retention.ms": "7d"})
        for i in range(400):
            broker.produce("t0", os.urandom(200) + b"%d" % i, key=b"k%d" % (i % 11))
        consumer_db = str(db)
        run_in_process(["--db", consumer_db, "consume", "t0", "-g", "g0", "-n", "50"])
        run_in_process(["--db", consumer_db, "consume", "t1", "-g", "g1", "-n", "1"])
    # Records written while a connection is open stay in the -wal file (no checkpoint).
    keeper = sqlite3.connect(db)
    keeper.execute("PRAGMA wal_autocheckpoint=0")
    with Broker(db) as broker:
        for i in range(40):
            broker.produce("t1", b"late %d" % i)
        seed = directory / "seed.db"
        shutil.copy(db, seed)
        shutil.copy(f"{db}-wal", f"{seed}-wal")
    keeper.close()
    return seed, Path(f"{seed}-wal")


def corrupt(seed: Path, target: Path, kind: str, rng: random.Random) -> None:
    """Write a damaged copy of ``seed`` (and its -wal) at ``target``."""
    data = bytearray(seed.read_bytes())
    wal = bytearray(Path(f"{seed}-wal").read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            first = rng.randrange(pages) * page
            for _ in range(rng.randint(1, 16)):
                data[first + rng.randrange(page)] ^= 1 << rng.randrange(8)
    elif kind == "zero-page":
        first = rng.randrange(pages) * page
        data[first : first + page] = bytes(page)
    elif kind == "truncate":
        del data[rng.randrange(len(data)) :]
        wal = bytearray()
    elif kind == "header":
        at = rng.randrange(100)
        data[at : at + rng.randint(1, 16)] = os.urandom(16)
        data = data[: len(data)] if len(data) >= 100 else data
    elif kind == "wal-flip":
        for _ in range(rng.randint(1, 8)):
            wal[rng.randrange(len(wal))] ^= 1 << rng.randrange(8)
    elif kind == "newer-version":
        data[60:64] = (10_000 + rng.randrange(1000)).to_bytes(4, "big")
        wal = bytearray()
    elif kind == "random-file":
        data = bytearray(os.urandom(rng.randrange(0, 3 * page)))
        wal = bytearray()
    target.write_bytes(bytes(data))
    Path(f"{target}-shm").unlink(missing_ok=True)
    wal_path = Path(f"{target}-wal")
    if wal:
        wal_path.write_bytes(bytes(wal))
    else:
        wal_path.unlink(missing_ok=True)
    if kind == "foreign":
        for path in (target, wal_path):
            path.unlink(missing_ok=True)
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE topics (x)")
        conn.execute("CREATE TABLE people (name TEXT, age INTEGER)")
        conn.executemany("INSERT INTO people VALUES (?, ?)", [("a", 1), ("b", 2)])
        conn.commit()
        conn.close()


def problem_of(code: int, stderr: bytes, escaped: BaseException | None, hung: bool) -> str | None:
    if hung:
        return "hung"
    if escaped is not None or b"Traceback" in stderr:
        return f"traceback {escaped!r}"
    if code < 0:
        return f"killed by signal {-code}"
    if code not in DOCUMENTED:
        return f"undocumented exit {code}"
    if code == 1:
        return "internal error (exit 1) on a damaged file"
    if code != 0 and b"error:" not in stderr:
        return f"exit {code} without error:"
    return None


def _worker(args: tuple[str, str, list[int]]) -> tuple[Counter[str], list[str]]:
    """Corrupt and check the copies numbered ``indexes``; returns (tally, problems)."""
    seed, workdir, indexes = args
    tally: Counter[str] = Counter()
    problems: list[str] = []
    for index in indexes:
        rng = random.Random(index)
        kind = CORRUPTIONS[index % len(CORRUPTIONS)]
        target = Path(workdir) / f"copy{os.getpid()}.db"
        corrupt(Path(seed), target, kind, rng)
        for command in rng.sample(COMMANDS, min(PER_COPY, len(COMMANDS))):
            outcome = run_in_process(["--db", str(target), *command], timeout=CALL_TIMEOUT)
            problem = problem_of(outcome.code, outcome.stderr, outcome.escaped, outcome.hung)
            tally[f"exit {outcome.code}"] += 1
            tally[f"{kind}"] += 1
            if problem:
                tally["problems"] += 1
                problems.append(f"copy {index} ({kind}) {command}: {problem}: {outcome!r}")
    return tally, problems


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_seed(tmp_path_factory.mktemp("corrupt-seed"))[0]


def test_corrupted_copies_in_process(seed: Path, tmp_path: Path, record_summary: Any) -> None:
    workers = max(1, min(4, os.cpu_count() or 1))
    chunks = [list(range(i, COPIES, workers * 8)) for i in range(workers * 8)]
    context = multiprocessing.get_context("fork")
    tally: Counter[str] = Counter()
    problems: list[str] = []
    # A chunk lost to a hang inside C code or a crash shows up as a timeout or a broken pool.
    per_chunk = CALL_TIMEOUT * PER_COPY * (COPIES // len(chunks) + 1)
    with context.Pool(workers, maxtasksperchild=1) as pool:
        results = [pool.apply_async(_worker, ((str(seed), str(tmp_path), c),)) for c in chunks]
        for result in results:
            part, found = result.get(timeout=per_chunk)
            tally.update(part)
            problems.extend(found)
    calls = COPIES * min(PER_COPY, len(COMMANDS))
    assert sum(v for k, v in tally.items() if k.startswith("exit ")) == calls
    assert not problems, f"{len(problems)} of {calls} calls failed:\n" + "\n".join(problems[:8])
    record_summary(
        "corrupt database",
        faults=f"{COPIES} damaged copies ({', '.join(CORRUPTIONS)})",
        checks="clean error (exit 6 …) or success; no traceback, exit 1, signal or hang",
        copies=COPIES,
        calls=calls,
        exits=" ".join(f"{k[5:]}:{v}" for k, v in sorted(tally.items()) if k.startswith("exit ")),
        hangs=0,
        tracebacks=0,
    )


def test_corrupted_copies_as_real_processes(
    seed: Path, tmp_path: Path, record_summary: Any
) -> None:
    """A sample through the console script: no traceback, no signal, no hang."""
    tally: Counter[int] = Counter()
    problems: list[str] = []
    target = tmp_path / "real.db"
    commands = COMMANDS[:: max(1, len(COMMANDS) // 4)]
    for index in range(REAL_COPIES):
        kind = CORRUPTIONS[index % len(CORRUPTIONS)]
        corrupt(seed, target, kind, random.Random(10_000_000 + index))
        command = commands[index % len(commands)]
        result = run_cli(
            target, *command, env=cli_env(target, NO_COLOR="1"), timeout=CALL_TIMEOUT * 3
        )
        tally[result.returncode] += 1
        problem = problem_of(result.returncode, result.stderr, None, False)
        if problem:
            problems.append(f"copy {index} ({kind}) {command}: {problem}: {result.stderr[-400:]!r}")
    assert not problems, "\n".join(problems[:8])
    record_summary(
        "corrupt database (processes)",
        faults=f"{REAL_COPIES} damaged copies, real processes",
        checks="no traceback, signal or hang; documented exit codes",
        calls=REAL_COPIES,
        exits=" ".join(f"{k}:{v}" for k, v in sorted(tally.items())),
    )


def test_damage_reported_with_generic_sqlite_codes_is_corrupt() -> None:
    """Regressions: SQLite's generic-coded damage messages map to exit 6, not exit 1."""
    from pubsub.db.connection import translate_error, undecodable_error
    from pubsub.errors import CorruptDatabaseError

    for text in ("unsupported file format", "malformed database schema (x) - near 'y'"):
        assert isinstance(translate_error(sqlite3.DatabaseError(text)), CorruptDatabaseError)
    raw = b'malformed database schema (group_members) - near "CASC\xc1DE": syntax error'
    undecodable = UnicodeDecodeError("utf-8", raw, 54, 55, "invalid start byte")
    error = undecodable_error(undecodable)
    assert isinstance(error, CorruptDatabaseError) and error.exit_code == 6
    assert undecodable_error(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x")) is None


def test_schema_with_undecodable_text_is_corrupt_at_open(tmp_path: Path) -> None:
    """A schema entry whose SQL is not UTF-8 makes sqlite3 raise UnicodeDecodeError; opening
    the file reports it as a damaged database (exit 6), in the API and through the CLI."""
    from pubsub.errors import CorruptDatabaseError

    db = tmp_path / "undecodable.db"
    with Broker(db) as broker:
        broker.create_topic("t")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema=ON")
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'group_members'").fetchone()
    damaged = sql.encode()[:-1] + b" \xc1)"
    conn.execute(
        "UPDATE sqlite_master SET sql = CAST(? AS BLOB) WHERE name = 'group_members'", (damaged,)
    )
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError) as caught:
        Broker(db, create=False)
    assert caught.value.message.startswith("not a usable SQLite database: malformed database")
    result = run_cli(db, "topic", "list")
    err = result.stderr.decode()
    assert result.returncode == 6, err
    assert err.startswith("error: not a usable SQLite database: malformed database schema"), err
    assert "\nhint: " in err and "Traceback" not in err
    assert result.stdout == b""
