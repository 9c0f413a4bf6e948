"""kcat and kafka-python against ``pubsub serve``; a kafka-python group across processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]

from pubsub import Broker, Message
from tests.helpers import cli_env, run_cli
from tests.serve.support import ServeProcess

ROOT = Path(__file__).resolve().parents[2]


def test_kcat_produces_and_consumes(serve: ServeProcess, kcat: Path) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        lines = "".join(f"k{i}:{codec}-{i}\n" for i in range(20))
        produced = subprocess.run(
            [
                str(kcat),
                "-b",
                serve.bootstrap,
                "-t",
                "t",
                "-P",
                "-K:",
                "-z",
                codec,
                "-H",
                "origin=kcat",
            ],
            input=lines.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [str(kcat), "-b", serve.bootstrap, "-t", "t", "-C", "-e", "-J"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr
    rows = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(rows) == 100
    assert {r["payload"].split("-")[0] for r in rows} == {"none", "gzip", "snappy", "lz4", "zstd"}
    assert all(r["headers"] == ["origin", "kcat"] for r in rows)
    # What kcat wrote, pubsub consume reads; what pubsub produce writes, kcat reads.
    cli = run_cli(serve.db, "consume", "t", "--format", "json")
    assert len(cli.stdout.splitlines()) == 100
    assert (
        run_cli(serve.db, "produce", "t", "-p", "0", "-k", "cli-key", "from the cli").returncode
        == 0
    )
    tail = subprocess.run(
        [
            str(kcat),
            "-b",
            serve.bootstrap,
            "-t",
            "t",
            "-p",
            "0",
            "-o",
            "-1",
            "-C",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert tail.stdout == b"cli-key=from the cli\n", tail.stderr


def test_kafka_python_producer_and_consumer(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    # kafka-python compresses with optional packages of its own for snappy, lz4 and zstd;
    # gzip is the standard library's (librdkafka covers the other codecs).
    for codec in (None, "gzip"):
        producer = KafkaProducer(
            bootstrap_servers=serve.bootstrap,
            compression_type=codec,
            acks="all",
        )
        futures = [
            producer.send(
                "t", value=f"{codec}-{i}".encode(), key=b"k%d" % (i % 3), headers=[("h", b"v")]
            )
            for i in range(50)
        ]
        producer.flush(30)
        assert all(f.get(10).offset >= 0 for f in futures)
        producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=serve.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    consumer.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
    got = list(consumer)
    assert len(got) == 100
    assert all(r.headers == [("h", b"v")] for r in got)
    ends = consumer.end_offsets([TopicPartition("t", 0), TopicPartition("t", 1)])
    assert sum(ends.values()) == 100
    consumer.close()
    with Broker(serve.db) as broker:
        assert sum(broker.latest_offset("t", p) for p in range(2)) == 100


class Member:
    """A kafka-python member process and what it printed."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.serve.kp_member", bootstrap, topic, group],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=cli_env(),
        )
        self.assigned: list[int] = []
        self.records: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.lock:
                if "assigned" in event:
                    self.assigned = event["assigned"]
                else:
                    self.records.append((event["p"], event["o"]))

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)
        self.thread.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
def test_a_kafka_python_group_of_three_processes_survives_a_sigkill(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 6)
        broker.produce_batch("t", [Message(f"a{i}", partition=i % 6) for i in range(600)])
    members = [Member(serve.bootstrap, "t", "trio") for _ in range(3)]
    try:
        wait_for(
            lambda: (
                sorted(p for m in members for p in m.assigned) == list(range(6))
                and all(len(m.assigned) == 2 for m in members)
            ),
            60,
            "three members with two partitions each",
        )
        victim = members.pop(0)
        lost = victim.assigned
        victim.stop(signal.SIGKILL)
        with Broker(serve.db) as broker:
            broker.produce_batch("t", [Message(f"b{i}", partition=i % 6) for i in range(600)])
        wait_for(
            lambda: sorted(p for m in members for p in m.assigned) == list(range(6)),
            60,
            f"the survivors took {lost} over",
        )

        def all_committed() -> bool:
            with Broker(serve.db) as broker:
                committed = broker.committed_offsets("trio", "t")
            return sorted(committed.values()) == [200] * 6

        wait_for(all_committed, 60, "every partition committed to its end")
        seen = {r for m in [*members, victim] for r in m.records}
        assert seen == {(p, o) for p in range(6) for o in range(200)}
    finally:
        for m in members:
            m.stop(signal.SIGTERM)
    described = json.loads(run_cli(serve.db, "group", "describe", "trio", "--json").stdout)
    assert {p["committed_offset"] for p in described["partitions"]} == {200}
