"""``pubsub produce --id``: a retried produce stores one record and prints the same offset,
also when several processes produce the same id at once (real processes, real pipes)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from pubsub import Broker
from tests.helpers import PUBSUB, cli_env, run_cli


def values(db: Path, topic: str = "t") -> list[bytes | None]:
    with Broker(db) as broker:
        parts = broker.describe_topic(topic).partitions
        return [r.value for p in range(parts) for r in broker.fetch(topic, p, 0)]


def test_the_same_id_twice_is_one_record_and_the_same_offset(tmp_path: Path) -> None:
    db = tmp_path / "db"
    assert run_cli(db, "topic", "create", "t", "--partitions", "3").returncode == 0
    first = run_cli(db, "produce", "t", "paid", "--id", "req-1", "--print-offsets")
    again = run_cli(db, "produce", "t", "paid", "--id", "req-1", "--print-offsets")
    assert first.returncode == again.returncode == 0, again.stderr
    assert first.stdout == again.stdout and first.stdout.count(b"\t") == 1
    as_json = run_cli(db, "produce", "t", "paid", "--id", "req-1", "--json")
    [shown] = [json.loads(line) for line in as_json.stdout.splitlines()]
    partition, offset = map(int, first.stdout.split(b"\t"))
    assert shown["duplicate"] is True
    assert (shown["topic"], shown["partition"], shown["offset"]) == ("t", partition, offset)
    other = run_cli(db, "produce", "t", "paid", "--id", "req-2", "--json")
    assert json.loads(other.stdout)["duplicate"] is False
    assert values(db) == [b"paid", b"paid"]
    assert first.stderr == again.stderr == b""


def test_after_the_window_the_id_stores_a_new_record(tmp_path: Path) -> None:
    db = tmp_path / "db"
    created = run_cli(db, "topic", "create", "t", "--config", "dedup.window.ms=300ms")
    assert created.returncode == 0, created.stderr
    described = run_cli(db, "topic", "describe", "t", "--json")
    assert json.loads(described.stdout)["config"]["dedup.window.ms"] == "300"
    first = json.loads(run_cli(db, "produce", "t", "v", "--id", "x", "--json").stdout)
    # Wait past the window (the clock the file is stamped with is the wall clock).
    time.sleep(0.35)
    later = json.loads(run_cli(db, "produce", "t", "v", "--id", "x", "--json").stdout)
    assert later["duplicate"] is False and later["offset"] == first["offset"] + 1
    altered = run_cli(db, "topic", "alter", "t", "--config", "dedup.window.ms=1h")
    assert altered.returncode == 0
    again = json.loads(run_cli(db, "produce", "t", "v", "--id", "x", "--json").stdout)
    assert again == {**later, "duplicate": True}
    assert values(db) == [b"v", b"v"]


def test_processes_producing_the_same_id_at_once_store_one_record(tmp_path: Path) -> None:
    db = tmp_path / "db"
    assert run_cli(db, "topic", "create", "t", "--partitions", "4").returncode == 0
    env = cli_env(db)
    for round_ in range(3):
        procs = [
            subprocess.Popen(
                [PUBSUB, "produce", "t", f"from-{n}", "--id", f"same-{round_}", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for n in range(6)
        ]
        answers = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            answers.append(json.loads(out))
        assert len({(a["partition"], a["offset"]) for a in answers}) == 1
        assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 5
    assert len(values(db)) == 3


def test_an_id_names_one_record(tmp_path: Path) -> None:
    db = tmp_path / "db"
    assert run_cli(db, "topic", "create", "t").returncode == 0
    two = run_cli(db, "produce", "t", "a", "b", "--id", "x")
    assert two.returncode == 2 and two.stderr.startswith(b"error: --id names one record")
    assert b"hint: " in two.stderr
    lines = run_cli(db, "produce", "t", "--id", "x", input=b"a\nb\n")
    assert lines.returncode == 2 and b"stdin holds 2" in lines.stderr
    empty = run_cli(db, "produce", "t", "--id", "x", input=b"")
    assert empty.returncode == 2 and b"stdin is empty" in empty.stderr
    as_json = run_cli(db, "produce", "t", "--id", "x", "--format", "json", input=b"{}\n")
    assert as_json.returncode == 2 and b'"id" field' in as_json.stderr
    assert values(db) == []
    one = run_cli(db, "produce", "t", "--id", "x", "-K", ":", "--json", input=b"k:line\n")
    assert one.returncode == 0, one.stderr
    with Broker(db) as broker:
        [record] = broker.fetch("t", 0, 0)
    assert (record.key, record.value) == (b"k", b"line")


def test_json_records_carry_their_own_ids(tmp_path: Path) -> None:
    db = tmp_path / "db"
    assert run_cli(db, "topic", "create", "t").returncode == 0
    feed = b"".join(
        json.dumps(r).encode() + b"\n"
        for r in (
            {"value": "a", "id": "1"},
            {"value": "b"},
            {"value": "a again", "id": "1"},
            {"value": "c", "id": "2", "key": "k"},
        )
    )
    result = run_cli(db, "produce", "t", "--format", "json", "--json", input=feed)
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s["offset"], s["duplicate"]) for s in shown] == [
        (0, False),
        (1, False),
        (0, True),
        (2, False),
    ]
    assert values(db) == [b"a", b"b", b"c"]
    bad = run_cli(db, "produce", "t", "--format", "json", input=b'{"value": "x", "id": 5}\n')
    assert bad.returncode == 2 and b"line 1" in bad.stderr
