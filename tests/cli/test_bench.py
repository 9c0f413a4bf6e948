"""``pubsub bench``: every workload runs and reports pubsub beside raw sqlite3."""

import json
from pathlib import Path

import pytest

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
