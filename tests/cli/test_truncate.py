"""``pubsub topic truncate``: exit codes, confirmation, output, and what it leaves."""

import json
import time
from pathlib import Path

import pytest

from pubsub import Broker, Message
from tests.helpers import PUBSUB, Terminal, cli_env, run_cli

pytestmark = pytest.mark.cli

HOUR = 3_600_000


@pytest.fixture
def db(db_path: Path) -> Path:
    """Topic t with 3 partitions of 10 records each: in each, offsets 0-4 are two hours old
    and offsets 5-9 are new."""
    now = time.time_ns() // 1_000_000
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=3)
        broker.produce_batch(
            "t",
            [
                Message(f"{p}-{i}", partition=p, timestamp=now - 2 * HOUR if i < 5 else now)
                for p in range(3)
                for i in range(10)
            ],
        )
    return db_path


def stored(db_path: Path) -> dict[int, tuple[int, int]]:
    with Broker(db_path) as broker:
        return dict(broker.watermarks("t"))


def records(db_path: Path) -> int:
    with Broker(db_path) as broker:
        return broker.describe_topic("t").records


def test_off_a_terminal_it_needs_yes_and_deletes_nothing(db: Path) -> None:
    for args in ([], ["--before", "3"], ["-p", "0"]):
        r = run_cli(db, "topic", "truncate", "t", *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.decode().splitlines()
        assert lines[0].startswith("error: refusing to delete") and "'t'" in lines[0], lines
        assert lines[1] == "hint: pass --yes to truncate it from a script"
        assert r.stdout == b""
    assert records(db) == 30


def test_truncate_everything(db: Path) -> None:
    r = run_cli(db, "topic", "truncate", "t", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    assert r.stderr.decode() == (
        "topic t: deleted 30 records (90 B) from 3 of 3 partition(s); "
        "log start 0: 10, 1: 10, 2: 10\n"
    )
    assert stored(db) == {0: (10, 10), 1: (10, 10), 2: (10, 10)}  # offsets keep counting
    r = run_cli(db, "produce", "t", "-p", "1", "--print-offsets", input=b"again\n")
    assert r.stdout == b"1\t10\n"
    assert run_cli(db, "db", "check").returncode == 0


def test_truncate_partitions_below_an_offset_with_json(db: Path) -> None:
    r = run_cli(db, "topic", "truncate", "t", "-p", "2", "-p", "0", "-p", "2", "--before", "4",
                "-y", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (result,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert result == {
        "topic": "t",
        "deleted_records": 8,
        "deleted_bytes": 24,
        "partitions": [
            {"partition": 0, "deleted_records": 4, "deleted_bytes": 12, "log_start_offset": 4},
            {"partition": 2, "deleted_records": 4, "deleted_bytes": 12, "log_start_offset": 4},
        ],
    }
    assert "deleted 8 records" in r.stderr.decode()
    assert stored(db) == {0: (4, 10), 1: (0, 10), 2: (4, 10)}


def test_truncate_before_a_time_or_a_duration(db: Path) -> None:
    r = run_cli(db, "topic", "truncate", "t", "-p", "0", "--before", "@-1h", "-y")
    assert r.returncode == 0, r.stderr
    assert stored(db)[0] == (5, 10)  # the two-hour-old records went
    # An ISO-8601 time in the future: everything before it, that is all.
    r = run_cli(db, "topic", "truncate", "t", "-p", "1", "--before", "@2999-01-01T00:00:00Z", "-y")
    assert r.returncode == 0, r.stderr
    assert stored(db)[1] == (10, 10)
    # Epoch milliseconds: before 1970 + 1 ms nothing is older.
    r = run_cli(db, "topic", "truncate", "t", "-p", "2", "--before", "@1", "-y")
    assert r.returncode == 0 and stored(db)[2] == (0, 10)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--before", "11"], 3, "offset 11 is beyond the end of t[0]"),
        (["--before", "-3"], 2, "invalid --before"),
        (["--before", "@-5"], 2, "invalid duration"),
        (["--before", "@someday"], 2, "invalid time"),
        (["-p", "7"], 2, "no partition 7"),
        (["-p", "-1"], 2, "-1"),
    ],
)
def test_bad_arguments_delete_nothing(db: Path, args: list[str], code: int, fragment: str) -> None:
    r = run_cli(db, "topic", "truncate", "t", *args, "--yes")
    assert r.returncode == code, r.stderr
    assert fragment in r.stderr.decode(), r.stderr
    assert "Traceback" not in r.stderr.decode()
    assert records(db) == 30


def test_unknown_topic_is_exit_3(db: Path) -> None:
    r = run_cli(db, "topic", "truncate", "nope", "--yes")
    assert r.returncode == 3 and r.stderr.startswith(b"error: topic 'nope' does not exist")


def test_on_a_terminal_it_asks(db: Path) -> None:
    env = cli_env(db, NO_COLOR="1")
    term = Terminal([PUBSUB, "topic", "truncate", "t", "-p", "1"], env)
    assert term.read_until(b"[y/N]"), term.text
    assert "Delete all 10 records of topic t in partition(s) 1?" in term.text
    term.send(b"n\r")
    assert term.finish() == 1
    assert records(db) == 30
    term = Terminal([PUBSUB, "topic", "truncate", "t", "--before", "@-1h"], env)
    assert term.read_until(b"[y/N]"), term.text
    assert "Delete the records before " in term.text
    term.send(b"y\r")
    assert term.finish() == 0, term.text
    assert "deleted 15 records" in term.text
    assert stored(db) == {0: (5, 10), 1: (5, 10), 2: (5, 10)}


def test_a_group_below_the_new_log_start_resumes_there_with_a_warning(db: Path) -> None:
    with Broker(db) as broker:
        broker.commit_offsets("g", {("t", 0): 2, ("t", 1): 2, ("t", 2): 2})
    assert run_cli(db, "topic", "truncate", "t", "-p", "0", "--before", "7", "-y").returncode == 0
    with Broker(db) as broker:
        assert broker.committed_offsets("g")[("t", 0)] == 2  # left as it is
    r = run_cli(db, "consume", "t", "-p", "0", "--group", "g")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [b"0-7", b"0-8", b"0-9"]
    assert b"warning: t[0]: offset 2 was deleted" in r.stderr
    assert b"resuming at the log start 7" in r.stderr
