"""The mirror's examples run: the crontab line (``--once``) and the systemd unit's command
(following, stopped with SIGTERM as ``systemctl stop`` does), with their paths pointed at
temporary files and the unit's cluster replaced by a file."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from pubsub.broker import Broker
from tests.helpers import wait_until
from tests.mirror.support import consume_json, mirror_env, stop_mirror

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def source(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with Broker(path) as broker:
        broker.create_topic("orders", 2)
        broker.produce_batch("orders", [f"order {i}".encode() for i in range(12)])
    return path


def test_the_crontab_line_runs(tmp_path: Path) -> None:
    [job] = [
        line
        for line in (EXAMPLES / "crontab-mirror").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    program, *args = shlex.split(job.split(None, 5)[5].split(">>")[0])
    assert program.endswith("/bin/pubsub") and args[0] == "mirror" and "--once" in args
    app, copy = source(tmp_path), tmp_path / "copy.db"
    args = [str(app) if a.endswith("app.db") else str(copy) if a.endswith(".db") else a
            for a in args]  # fmt: skip
    for _ in range(2):  # cron runs it again and again: the second run forwards nothing
        done = subprocess.run(
            ["pubsub", *args], env=mirror_env(), capture_output=True, check=False, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["event"] == "caught_up"
    assert len(consume_json(copy, "orders")) == 12


def test_the_systemd_unit_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    unit = (EXAMPLES / "systemd" / "pubsub-mirror.service").read_text()
    assert "KillSignal=SIGTERM" in unit and "WantedBy=multi-user.target" in unit
    [exec_start] = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")
    ]
    program, *args = shlex.split(exec_start)
    assert program.endswith("/bin/pubsub") and args[0] == "mirror"
    app, copy = source(tmp_path), tmp_path / "copy.db"
    args = [str(app) if a.endswith("app.db") else str(copy) if a.startswith("kafka://") else a
            for a in args]  # fmt: skip
    proc = subprocess.Popen(
        ["pubsub", *args], env=mirror_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: copy.exists() and len(consume_json(copy, "orders")) == 12, what="12")
    finally:
        code, _, err = stop_mirror(proc)
    assert code == 0, err
