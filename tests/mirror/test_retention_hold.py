"""Retention and mirrors: ``retention.hold.mirrors=true`` keeps what a named mirror has not
forwarded (and says so); without it retention wins and the mirror reports the gap."""

from __future__ import annotations

import json
from pathlib import Path

from pubsub.broker import Broker
from tests.mirror.support import consume_json, ok, run_pubsub


def setup(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Broker(a) as broker:
        broker.create_topic("logs", 1, {"retention.messages": "5"})
        broker.produce_batch("logs", [f"first {i}".encode() for i in range(10)])
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--name", "backup"))
    with Broker(a) as broker:
        broker.produce_batch("logs", [f"second {i}".encode() for i in range(10)])
    return a, b


def test_the_hold_keeps_what_a_mirror_has_not_forwarded(tmp_path: Path) -> None:
    a, b = setup(tmp_path)
    ok(run_pubsub("--db", str(a), "topic", "alter", "logs", "--config",
                  "retention.hold.mirrors=true"))  # fmt: skip
    result = run_pubsub("--db", str(a), "retention", "run", "--json")
    report = json.loads(ok(result))
    assert report["held"] == [
        "logs[0]: kept offsets 10 to 14 (5 records) that mirror 'backup' has not forwarded "
        "yet (retention.hold.mirrors)"
    ]
    assert b"held back: logs[0]: kept offsets 10 to 14" in result.stderr
    with Broker(a) as broker:
        # Offsets below 10 were forwarded: retention.messages deletes those.
        assert broker.earliest_offset("logs", 0) == 10
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--name", "backup"))
    assert len(consume_json(b, "logs")) == 20  # nothing lost
    ok(run_pubsub("--db", str(a), "retention", "run"))
    with Broker(a) as broker:
        assert broker.earliest_offset("logs", 0) == 15  # forwarded now: retention goes on


def test_without_the_hold_retention_wins_and_the_mirror_reports_the_gap(tmp_path: Path) -> None:
    a, b = setup(tmp_path)
    ok(run_pubsub("--db", str(a), "retention", "run"))
    result = run_pubsub("mirror", str(a), str(b), "--once", "--name", "backup", "--json")
    events = [json.loads(line) for line in ok(result).splitlines()]
    gaps = [e for e in events if e["event"] == "gap"]
    assert [(g["topic"], g["partition"], g["first"], g["count"]) for g in gaps] == [
        ("logs", 0, 10, 5)
    ]
    assert b"offsets 10 to 14 were deleted at the source before they were forwarded" in (
        result.stderr
    )
    assert len(consume_json(b, "logs")) == 15
    rows = [json.loads(line) for line in ok(run_pubsub("mirror", "status", str(a))).splitlines()]
    assert [(r["skipped"], r["lag"]) for r in rows] == [(5, 0)]
