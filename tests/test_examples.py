"""Every example in examples/ runs, against a database in a temporary directory."""

import subprocess
import sys
from pathlib import Path

import pytest

from pubsub.db.schema import SCHEMA_VERSION
from tests.helpers import cli_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.examples


def test_every_example_has_a_test() -> None:
    # The scripts run below; crontab and systemd units run in tests/cli/test_maintenance_cli.py
    # and (the mirror's) in tests/mirror/test_mirror_examples.py.
    found = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file())
    assert found == [
        "consumer.py",
        "crontab",
        "crontab-mirror",
        "producer.py",
        "quickstart.sh",
        "systemd/pubsub-mirror.service",
        "systemd/pubsub-retention.service",
        "systemd/pubsub-retention.timer",
    ]


def test_quickstart(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = subprocess.run(
        ["sh", str(EXAMPLES / "quickstart.sh")],
        env=cli_env(db),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    # The group resumed: the late order is the only record of the last group run.
    late = out.split("$ pubsub consume orders --group billing\n")[-1]
    assert late.startswith("late order\n")
    # The copy holds the same records as the source.
    copy = out.split('$ pubsub consume orders-copy --format "%p:%o %s\\n"\n')[1].split("\n$ ")[0]
    assert len(copy.strip().splitlines()) == 8
    assert f'"schema_version":{SCHEMA_VERSION}' in out


def test_python_producer_and_consumer(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    produced = subprocess.run(
        [sys.executable, str(EXAMPLES / "producer.py"), db],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote readings[" in produced.stdout
    first = subprocess.run(
        [sys.executable, str(EXAMPLES / "consumer.py"), db],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "consumed 11 records" in first.stdout
    assert "t1 21.5 C" in first.stdout
    second = subprocess.run(
        [sys.executable, str(EXAMPLES / "consumer.py"), db],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "consumed 0 records" in second.stdout  # the group committed on the first run
