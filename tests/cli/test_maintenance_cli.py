"""``pubsub retention run``, ``db check|vacuum|backup`` and ``config`` through the CLI."""

import json
import re
import shlex
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pubsub import Broker
from tests.helpers import Invoker, cli_env

pytestmark = pytest.mark.cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def expiring(cli: Invoker) -> Invoker:
    with Broker(cli.db_path, clock=lambda: 1_000_000_000_000) as broker:
        broker.create_topic("logs", partitions=2, config={"retention.ms": "1d"})
        broker.create_topic("keep")
        for p in range(2):
            broker.produce_batch("logs", [b"old line"] * 10, partition=p)
        broker.produce_batch("keep", [b"forever"] * 3)
    with Broker(cli.db_path) as broker:
        broker.produce("logs", b"fresh", partition=0)
    return cli


def test_retention_run_reports_json(expiring: Invoker) -> None:
    plan = expiring("retention", "run", "--dry-run")
    assert plan.exit_code == 0
    report = json.loads(plan.stdout)
    assert report["dry_run"] is True and report["deleted_records"] == 20
    assert "would delete 20 records" in plan.stderr
    r = expiring("retention", "run", "--json")
    assert r.exit_code == 0, r
    report = json.loads(r.stdout)
    assert report["deleted_records"] == 20 and report["deleted_bytes"] == 160
    assert report["partitions_checked"] == 3
    assert sorted((p["partition"], p["log_start_offset"]) for p in report["partitions"]) == [
        (0, 10),
        (1, 10),
    ]
    assert all(p["reasons"] == ["retention.ms"] for p in report["partitions"])
    assert re.search(r"retention: deleted 20 records \(160 B\) from 2 of 3 partitions", r.stderr)
    assert expiring("consume", "logs").stdout == "fresh\n"


def test_retention_run_for_one_topic(expiring: Invoker) -> None:
    r = expiring("retention", "run", "--topic", "keep")
    assert json.loads(r.stdout)["deleted_records"] == 0
    r = expiring("retention", "run", "--topic", "nope")
    assert r.exit_code == 3


CHECKS = ["integrity", "foreign_keys", "tables", "counters", "offsets", "time_index"]


def check_report(stdout: str) -> dict[str, Any]:
    """The one JSON object `db check` prints when piped or with --json."""
    [line] = stdout.splitlines()
    report = json.loads(line)
    assert isinstance(report, dict)
    return report


def test_db_check(expiring: Invoker) -> None:
    for args in ([], ["--json"], ["--quick"]):  # piped: JSON without --json too
        r = expiring("db", "check", *args)
        assert r.exit_code == 0 and "ok" in r.stderr
        report = check_report(r.stdout)
        assert report == {
            "ok": True,
            "quick": args == ["--quick"],
            "checks": [{"check": name, "ok": True, "problems": []} for name in CHECKS],
            "problems": [],
        }
    conn = sqlite3.connect(expiring.db_path, isolation_level=None)
    conn.execute("UPDATE partitions SET byte_count = 1 WHERE partition = 1")
    conn.close()
    r = expiring("db", "check", "--json")
    assert r.exit_code == 6
    report = check_report(r.stdout)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["check"] == "counters" and problem["where"] == "logs[1]"
    assert [c["check"] for c in report["checks"] if not c["ok"]] == ["counters"]
    [counters] = [c for c in report["checks"] if c["check"] == "counters"]
    assert counters["problems"] == [{"where": "logs[1]", "detail": problem["detail"]}]
    assert "error: 1 problem found" in r.stderr


def test_db_vacuum_and_backup(expiring: Invoker, tmp_path: Path) -> None:
    expiring("retention", "run")
    r = expiring("db", "vacuum")
    assert r.exit_code == 0 and "freed" in r.stderr
    target = tmp_path / "backup.db"
    r = expiring("db", "backup", str(target))
    assert r.exit_code == 0, r
    with Broker(target) as copy:
        assert copy.check() == []
        assert [t.name for t in copy.list_topics()] == ["keep", "logs"]
    r = expiring("db", "backup", str(target))
    assert r.exit_code == 4 and "already exists" in r.stderr
    r = expiring("db", "backup", str(tmp_path / "missing" / "x.db"))
    assert r.exit_code == 7


def test_config_defaults(cli: Invoker) -> None:
    r = cli("config", "set", "retention.ms=7d", "retention.bytes=1GiB")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == {"retention.ms": "604800000", "retention.bytes": str(1 << 30)}
    cli("topic", "create", "t")
    [topic] = [json.loads(line) for line in cli("topic", "list").stdout.splitlines()]
    assert topic["config"]["retention.ms"] == "604800000"
    r = cli("config", "unset", "retention.bytes")
    assert json.loads(r.stdout) == {"retention.ms": "604800000"}
    assert cli("config", "set", "bogus=1").exit_code == 2
    assert cli("config", "unset", "bogus").exit_code == 2
    assert json.loads(cli("config", "list").stdout) == {"retention.ms": "604800000"}


def test_crontab_example_runs(expiring: Invoker) -> None:
    lines = (EXAMPLES / "crontab").read_text().splitlines()
    jobs = [
        line for line in lines if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(jobs) == 2
    for job in jobs:
        command = job.split(None, 5)[5]
        program, *args = shlex.split(command.split(">>")[0])
        assert program.endswith("/bin/pubsub") and args[:2] == ["retention", "run"]
        done = subprocess.run(
            ["pubsub", *args], env=cli_env(expiring.db_path), capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "deleted_records" in json.loads(done.stdout)


def test_systemd_example_runs(expiring: Invoker) -> None:
    service = (EXAMPLES / "systemd" / "pubsub-retention.service").read_text()
    timer = (EXAMPLES / "systemd" / "pubsub-retention.timer").read_text()
    assert "OnUnitActiveSec=" in timer and "WantedBy=timers.target" in timer
    [exec_start] = [
        line.split("=", 1)[1] for line in service.splitlines() if line.startswith("ExecStart=")
    ]
    [environment] = [
        line.split("=", 1)[1] for line in service.splitlines() if line.startswith("Environment=")
    ]
    assert environment.startswith("PUBSUB_DB=")
    program, *args = shlex.split(exec_start)
    assert program.endswith("/bin/pubsub")
    done = subprocess.run(
        ["pubsub", *args], env=cli_env(expiring.db_path), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted_records"] == 20
