"""``pubsub mirror`` between database files: real processes, real files, both ends read back
through ``pubsub consume --format json`` and compared record by record."""

from __future__ import annotations

import json
from pathlib import Path

from pubsub.broker import Broker
from pubsub.records import Message
from tests.helpers import wait_until
from tests.mirror.support import (
    assert_mirrored,
    consume_json,
    file_id,
    ok,
    origins,
    run_pubsub,
    sample_messages,
    start_mirror,
    stop_mirror,
)


def make_source(path: Path, topic: str = "orders", partitions: int = 3, count: int = 40) -> None:
    with Broker(path) as broker:
        broker.create_topic(topic, partitions)
        broker.produce_batch(topic, sample_messages(partitions, count))


def test_once_copies_every_record_with_every_field(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a)
    result = run_pubsub("mirror", str(a), str(b), "--once", "--name", "m")
    ok(result)
    assert b"caught up (40 records forwarded)" in result.stderr
    assert result.stdout == b""  # stdout is data only: nothing without --json
    source, dest = consume_json(a, "orders"), consume_json(b, "orders")
    assert_mirrored(source, dest, file_id(a))
    # A file destination starts its offsets where the source did: the same offsets.
    assert [(r["partition"], r["offset"]) for r in dest] == [
        (r["partition"], r["offset"]) for r in source
    ]
    assert any(r["value"] is None for r in dest)  # tombstones stay tombstones
    assert any(isinstance(r["value"], dict) for r in dest)  # binary stays binary


def test_a_second_run_forwards_only_what_is_new(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, count=10)
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--name", "m"))
    with Broker(a) as broker:
        broker.produce_batch("orders", sample_messages(3, 7))
    result = run_pubsub("mirror", str(a), str(b), "--once", "--name", "m")
    ok(result)
    assert b"caught up (7 records forwarded)" in result.stderr
    assert_mirrored(consume_json(a, "orders"), consume_json(b, "orders"))


def test_two_mirrors_with_different_names_are_independent(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, count=5)
    ok(run_pubsub("mirror", str(a), str(b), "orders", "--once", "--name", "one"))
    ok(run_pubsub("mirror", str(a), str(b), "orders", "--once", "--name", "two", "--prefix", "x."))
    assert len(consume_json(b, "orders")) == 5
    assert len(consume_json(b, "x.orders")) == 5
    again = run_pubsub("mirror", str(a), str(b), "orders", "--once", "--name", "one")
    assert b"caught up (0 records forwarded)" in ok(again) + again.stderr


def test_follow_mode_wakes_on_new_records_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, count=3)
    proc = start_mirror(str(a), str(b), "--name", "live", "--json")
    try:
        wait_until(lambda: b.exists() and len(consume_json(b, "orders")) == 3, what="3 records")
        with Broker(a) as broker:
            for i in range(20):
                broker.produce("orders", f"late {i}", key=f"k{i}")
        wait_until(lambda: len(consume_json(b, "orders")) == 23, what="23 records")
    finally:
        code, out, err = stop_mirror(proc)
    assert code == 0, err.decode()
    assert b"caught up" in err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "connected" and events[0]["mirror"] == "live"
    assert "caught_up" in {e["event"] for e in events}
    assert_mirrored(consume_json(a, "orders"), consume_json(b, "orders"))


def test_two_way_mirrors_between_files_do_not_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path, text in ((a, "from a"), (b, "from b")):
        with Broker(path) as broker:
            broker.create_topic("chat", 1)
            broker.produce("chat", text)
    for _ in range(3):
        ok(run_pubsub("mirror", str(a), str(b), "chat", "--once", "--name", "a-to-b"))
        ok(run_pubsub("mirror", str(b), str(a), "chat", "--once", "--name", "b-to-a"))
    for path in (a, b):
        values = sorted(r["value"] for r in consume_json(path, "chat"))
        assert values == ["from a", "from b"], path
    a_records = consume_json(a, "chat")
    # a's own record has no origin; the one from b names b.
    assert origins(a_records[0]) == []
    assert origins(a_records[1])[0].startswith(file_id(b) + "/")


def test_topic_selection_rename_prefix_and_exclude(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Broker(a) as broker:
        for name in ("orders", "orders-eu", "audit", "tmp-1"):
            broker.create_topic(name, 2)
            broker.produce_batch(name, [Message(f"{name} {i}", key=str(i)) for i in range(4)])
    ok(
        run_pubsub(
            "mirror", str(a), str(b), "^orders", "audit", "--exclude", "-eu$",
            "--rename", "audit=audit-copy", "--prefix", "dc1.", "--once",
        )
    )  # fmt: skip
    with Broker(b) as broker:
        names = sorted(t.name for t in broker.list_topics())
    assert names == ["dc1.audit-copy", "dc1.orders"]
    assert_mirrored(consume_json(a, "orders"), consume_json(b, "dc1.orders"))


def test_partition_counts_must_match_unless_repartition(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, partitions=3, count=30)
    with Broker(b) as broker:
        broker.create_topic("orders", 2)
    refused = run_pubsub("mirror", str(a), str(b), "--once")
    assert refused.returncode == 2
    assert b"error: topic 'orders' has 3 partitions" in refused.stderr
    assert b"hint: give --repartition" in refused.stderr
    assert consume_json(b, "orders") == []
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--repartition"))
    from pubsub.partitioner import partition_for_key

    dest = consume_json(b, "orders")
    assert len(dest) == 30
    with Broker(b) as broker:
        for r in broker.fetch("orders", 0, 0, max_records=100) + broker.fetch(
            "orders", 1, 0, max_records=100
        ):
            if r.key is not None:
                assert r.partition == partition_for_key(r.key, 2)


def test_no_create_refuses_a_missing_topic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, count=2)
    result = run_pubsub("mirror", str(a), str(b), "--once", "--no-create")
    assert result.returncode == 3, result.stderr
    assert b"error:" in result.stderr


def test_created_topics_take_the_source_configuration(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Broker(a) as broker:
        broker.create_topic(
            "c", 2, {"cleanup.policy": "compact", "retention.ms": "3600000",
                     "max.message.bytes": "2048"},
        )  # fmt: skip
        broker.produce("c", "v", key="k")
    ok(run_pubsub("mirror", str(a), str(b), "--once"))
    with Broker(b) as broker:
        info = broker.describe_topic("c")
    assert info.partitions == 2
    assert info.config["cleanup.policy"] == "compact"
    assert info.config["retention.ms"] == "3600000"
    assert info.config["max.message.bytes"] == "2048"


def test_no_origin_leaves_the_headers_alone(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, count=8)
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--no-origin"))
    source, dest = consume_json(a, "orders"), consume_json(b, "orders")
    assert [r["headers"] for r in dest] == [r["headers"] for r in source]


def test_status_reports_progress_at_both_ends(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, partitions=2, count=10)
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--name", "s"))
    with Broker(a) as broker:
        broker.produce("orders", "more", partition=0)
    rows = [
        json.loads(line)
        for line in ok(run_pubsub("--db", str(a), "mirror", "status", "--name", "s")).splitlines()
    ]
    assert [(r["role"], r["partition"], r["lag"]) for r in rows] == [
        ("source", 0, 1),
        ("source", 1, 0),
    ]
    assert rows[0]["source_end"] == 6 and rows[0]["forwarded"] == 5
    assert rows[0]["lag_seconds"] >= 0 and rows[0]["state"] == "stopped"
    dest_rows = [
        json.loads(line) for line in ok(run_pubsub("mirror", "status", str(b))).splitlines()
    ]
    assert {(r["role"], r["forwarded"]) for r in dest_rows} == {("destination", 5)}
    missing = run_pubsub("mirror", "status", str(a), "--name", "nope")
    assert missing.returncode == 3 and b"error: no mirror named 'nope'" in missing.stderr


def test_metrics_stats_and_top_show_mirror_lag(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_source(a, partitions=1, count=4)
    ok(run_pubsub("mirror", str(a), str(b), "--once", "--name", "lagging"))
    with Broker(a) as broker:
        broker.produce_batch("orders", [b"x", b"y", b"z"])
    metrics = ok(run_pubsub("--db", str(a), "metrics")).decode()
    assert 'pubsub_mirror_lag_records{mirror="lagging",topic="orders",partition="0"} 3' in metrics
    assert "# TYPE pubsub_mirror_lag_seconds gauge" in metrics
    stats = json.loads(ok(run_pubsub("--db", str(a), "stats", "--json")))
    assert [(m["mirror"], m["lag"]) for m in stats["mirrors"]] == [("lagging", 3)]
    top = json.loads(ok(run_pubsub("--db", str(a), "top")))  # piped: one JSON snapshot
    assert [(m["mirror"], m["lag"]) for m in top["mirrors"]] == [("lagging", 3)]
    # A file no mirror reads has no mirror metrics at all.
    assert "pubsub_mirror" not in ok(run_pubsub("--db", str(b), "metrics")).decode()
