"""Messages that count something say "1 record", never "1 records" or "1 record(s)".

One case each, with a count of one, through the command that prints it.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, Consumer
from tests.helpers import PUBSUB, Invoker, Terminal, cli_env, run_cli

pytestmark = pytest.mark.cli


@pytest.fixture
def one_each(cli: Invoker) -> Invoker:
    """Topic t with one partition and one record; group g with one committed offset."""
    with Broker(cli.db_path) as broker:
        broker.create_topic("t")
        broker.produce("t", b"x")
        broker.commit_offsets("g", {("t", 0): 0})
    return cli


def _sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(statement)
    finally:
        conn.close()


def test_db_check_counts_one_problem_and_one_record(one_each: Invoker) -> None:
    _sql(one_each.db_path, "UPDATE partitions SET byte_count = 2")
    r = one_each("db", "check")
    assert r.exit_code == 6
    assert "error: 1 problem found" in r.stderr
    [problem] = json.loads(r.stdout)["problems"]
    assert problem["detail"] == "counters say 1 record / 2 bytes, the log holds 1 record / 1 byte"


def test_db_check_counts_one_time_index_entry(one_each: Invoker) -> None:
    _sql(one_each.db_path, "INSERT INTO time_index SELECT topic_id, 0, 9e12, 5 FROM topics")
    r = one_each("db", "check")
    [problem] = json.loads(r.stdout)["problems"]
    assert problem["detail"] == "1 entry points past next_offset"


def test_db_vacuum_counts_one_page(one_each: Invoker) -> None:
    _sql(one_each.db_path, "CREATE TABLE scratch (a)")
    _sql(one_each.db_path, "DROP TABLE scratch")  # its root page is now the one free page
    r = one_each("db", "vacuum")
    assert r.exit_code == 0 and "freed 1 page:" in r.stderr, r


def test_reset_offsets_counts_one_offset(one_each: Invoker) -> None:
    r = one_each("group", "reset-offsets", "g", "--topic", "t", "--to-latest", "--execute")
    assert r.exit_code == 0 and "group g: 1 offset reset" in r.stderr, r


def test_delete_offsets_counts_one_offset(one_each: Invoker) -> None:
    r = one_each("group", "delete-offsets", "g", "--topic", "t")
    assert r.exit_code == 0 and "group g: deleted 1 offset of topic t" in r.stderr, r


def test_a_live_group_counts_one_member(one_each: Invoker) -> None:
    consumer = Consumer(one_each.db_path, "t", group="g", session_timeout=30)
    try:
        r = one_each("group", "delete", "g")
    finally:
        consumer.close(commit=False)
    assert r.exit_code == 2 and "group 'g' has 1 live member;" in r.stderr, r


def test_retention_counts_one_record_of_one_partition(cli: Invoker) -> None:
    with Broker(cli.db_path, clock=lambda: 1_000_000_000_000) as broker:
        broker.create_topic("logs", config={"retention.ms": "1d"})
        broker.produce("logs", b"old")
    r = cli("retention", "run")
    assert r.exit_code == 0, r
    assert "retention: deleted 1 record (3 B) from 1 of 1 partition in " in r.stderr


def test_bench_counts_one_record_per_call(db_path: Path) -> None:
    done = run_cli(db_path, "bench", "produce", "-n", "2", "--batch", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["note"] == "latency: per produce_batch call of 1 record"
    done = run_cli(db_path, "bench", "consume", "-n", "2", "--batch", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["note"] == "latency: per poll of up to 1 record plus its commit"


def test_bench_on_a_terminal_counts_one_record_and_one_producer(db_path: Path) -> None:
    term = Terminal([PUBSUB, "bench", "produce", "-n", "1"], cli_env(db_path, NO_COLOR="1"))
    try:
        code = term.finish(timeout=120)
    finally:
        term.proc.kill()
    assert code == 0, term.text
    assert "produce: 1 record in " in term.text
    assert "(s)" not in term.text
