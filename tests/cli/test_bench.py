"""``pubsub bench``: every workload runs and reports pubsub beside raw sqlite3."""

import json
from pathlib import Path

import pytest

from pubsub import Broker
from tests.helpers import run_cli

pytestmark = [pytest.mark.cli, pytest.mark.slow]


@pytest.mark.parametrize(
    ("args", "raw"),
    [
        (
            ["produce", "-n", "2000", "--batch", "100", "--producers", "2", "--partitions", "2"],
            True,
        ),
        (
            ["consume", "-n", "2000", "--consumers", "2", "--partitions", "2", "--work-us", "10"],
            True,
        ),
        (["e2e", "--rate", "200", "--seconds", "1"], False),
    ],
    ids=["produce", "consume", "e2e"],
)
def test_bench_workloads(db_path: Path, args: list[str], raw: bool) -> None:
    done = run_cli(db_path, "bench", *args, "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["workload"] == args[0]
    if args[0] == "e2e":  # a loaded machine may not keep 200/s up for the whole second
        assert 0 < report["records"] <= 200
    else:
        assert report["records"] == 2000
    assert report["rate"] > 0 and set(report["latency_ms"]) == {"p50", "p99", "max"}
    if raw:
        assert report["raw_rate"] > 0 and report["ratio"] > 0
        assert set(report["raw_latency_ms"]) == {"p50", "p99", "max"}


def test_bench_e2e_beyond_what_the_machine_can_do(db_path: Path) -> None:
    """A rate no machine sustains: the follower is told the producer stopped early, and the
    report says how many records were really sent (no crash, no hang)."""
    done = run_cli(db_path, "bench", "e2e", "--rate", "2000000", "--seconds", "1", "--json",
                   timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["records"] < 2_000_000
    assert set(report["latency_ms"]) == {"p50", "p99", "max"}


def test_bench_cli_startup(db_path: Path) -> None:
    done = run_cli(db_path, "bench", "cli", "--runs", "3", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["workload"] == "cli" and report["seconds"] > 0 and report["raw_seconds"] > 0


def test_bench_on_a_given_file(tmp_path: Path) -> None:
    target = tmp_path / "card.db"
    done = run_cli(
        tmp_path / "unused.db", "bench", "produce", "-n", "500", "--db", str(target), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert target.exists()  # the user's file was used (e.g. to test an SD card)


def test_bench_refuses_idle_consumers(db_path: Path) -> None:
    done = run_cli(db_path, "bench", "consume", "--consumers", "3", "--partitions", "2")
    assert done.returncode == 2 and b"more consumers than partitions" in done.stderr


# -- --db FILE: bench replaces only what an earlier bench run wrote ----------------------------


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of a database file and of each companion that exists."""
    found = {}
    for suffix in ("", "-wal", "-shm", "-reserve"):
        file = Path(f"{path}{suffix}")
        if file.is_file():
            found[suffix] = (file.read_bytes(), file.stat().st_mtime_ns)
        elif file.exists():
            found[suffix] = (b"", file.stat().st_mtime_ns)
    return found


def _refused(tmp_path: Path, target: Path) -> bytes:
    before = _snapshot(target)
    done = run_cli(tmp_path / "unused.db", "bench", "produce", "-n", "50", "--db", str(target))
    assert done.returncode == 4, done.stderr
    assert done.stdout == b""
    assert done.stderr.startswith(b"error: ") and b"\nhint: " in done.stderr, done.stderr
    assert _snapshot(target) == before  # nothing of the file or its companions changed
    return done.stderr


def test_bench_refuses_to_replace_a_pubsub_database(tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    with Broker(target) as broker:
        broker.create_topic("orders")
        broker.produce("orders", b"precious")
    assert Path(f"{target}-reserve").exists()
    stderr = _refused(tmp_path, target)
    assert b"not created by pubsub bench" in stderr
    with Broker(target) as broker:
        assert [r.value for r in broker.fetch("orders", 0, 0)] == [b"precious"]


def test_bench_refuses_a_database_in_use_and_leaves_its_wal_alone(tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    with Broker(target) as broker:
        broker.create_topic("orders")
        broker.produce("orders", b"precious")
        # Open here: the -wal and -shm files exist and must not be touched either.
        assert Path(f"{target}-wal").exists() and Path(f"{target}-shm").exists()
        _refused(tmp_path, target)


def test_bench_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_bytes(b"my notes\n")
    assert b"not a SQLite database" in _refused(tmp_path, target)
    directory = tmp_path / "dir.db"
    directory.mkdir()
    assert b"directory" in _refused(tmp_path, directory)


def test_bench_refuses_an_earlier_bench_file_that_now_holds_other_data(tmp_path: Path) -> None:
    target = tmp_path / "card.db"
    first = run_cli(tmp_path / "unused.db", "bench", "produce", "-n", "50", "--db", str(target))
    assert first.returncode == 0, first.stderr
    with Broker(target) as broker:  # in use: its newest data may be only in the -wal file
        assert b"write-ahead log" in _refused(tmp_path, target)
        broker.create_topic("orders")
    assert b"topic 'orders'" in _refused(tmp_path, target)


def test_bench_reuses_its_own_file_an_empty_file_and_leaves_neighbours_alone(
    tmp_path: Path,
) -> None:
    neighbour = tmp_path / "raw-bench.db"  # the name bench once used for its raw baseline
    neighbour.write_bytes(b"someone else's file")
    target = tmp_path / "card.db"
    target.touch()  # an empty file is no data
    for workload in (["produce", "-n", "50"], ["consume", "-n", "50"], ["e2e", "--seconds", "0.5"]):
        done = run_cli(tmp_path / "unused.db", "bench", *workload, "--db", str(target), "--json")
        assert done.returncode == 0, (workload, done.stderr)
    assert neighbour.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "card.db", "card.db-reserve", "raw-bench.db",
    ]  # fmt: skip
