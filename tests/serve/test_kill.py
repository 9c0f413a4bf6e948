"""SIGKILL ``pubsub serve`` while a confluent-kafka producer writes: no acknowledged record is
lost, and an idempotent producer stores nothing twice. 20 kills each in the suite;
``PUBSUB_SOAK=1`` makes it 200 and 500."""

from __future__ import annotations

import os
import threading
import time

import pytest
from confluent_kafka import KafkaError, Producer

from pubsub import Broker
from tests.serve.support import ServeProcess

KILLS = 200 if os.environ.get("PUBSUB_SOAK") == "1" else 20


@pytest.mark.reliability
@pytest.mark.slow
def test_sigkill_mid_produce_loses_no_acknowledged_record(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    acked: set[bytes] = set()
    failed = 0
    lock = threading.Lock()

    def report(error: KafkaError | None, message: object) -> None:
        nonlocal failed
        with lock:
            if error is None:
                acked.add(message.value())  # type: ignore[attr-defined]
            else:
                failed += 1

    producer = Producer(
        {
            "bootstrap.servers": serve.bootstrap,
            "linger.ms": 1,
            "message.timeout.ms": 60_000,
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 100,
            "log_level": 0,
        }
    )
    sequence = 0
    for _kill in range(KILLS):
        target = len(acked) + 50
        deadline = time.monotonic() + 60
        while len(acked) < target:  # records flow and are acknowledged; then kill
            assert time.monotonic() < deadline, "no progress after a restart"
            for _ in range(20):
                producer.produce("t", value=b"r%d" % sequence, on_delivery=report)
                sequence += 1
            producer.poll(0.005)
        for _ in range(50):  # some in flight at the moment of the kill
            producer.produce("t", value=b"r%d" % sequence, on_delivery=report)
            sequence += 1
        serve.restart()
    assert producer.flush(60) == 0
    with Broker(serve.db) as broker:
        stored = {r.value for p in range(2) for r in broker.fetch("t", p, 0, max_records=10**7)}
    assert acked <= stored, f"{len(acked - stored)} acknowledged records lost"
    assert len(acked) >= KILLS * 50


IDEMPOTENT_KILLS = 500 if os.environ.get("PUBSUB_SOAK") == "1" else 20


@pytest.mark.reliability
@pytest.mark.slow
def test_idempotent_producer_resumes_after_sigkill_without_duplicates(
    serve: ServeProcess,
) -> None:
    """confluent-kafka with enable.idempotence=true: every kill leaves batches in flight,
    which it sends again to the restarted server with the same producer id and sequences.
    Each record is stored exactly once, in the order produced, and none acknowledged is
    lost: the producer state is written in the same transaction as the records."""
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    acked: set[bytes] = set()
    failed: list[KafkaError] = []
    lock = threading.Lock()

    def report(error: KafkaError | None, message: object) -> None:
        with lock:
            if error is None:
                acked.add(message.value())  # type: ignore[attr-defined]
            else:
                failed.append(error)

    producer = Producer(
        {
            "bootstrap.servers": serve.bootstrap,
            "enable.idempotence": True,
            # librdkafka 2.16 re-bootstraps when its only broker goes down again right after
            # a reconnect, and its idempotent producer then waits ("partition drain") for
            # requests of the broker handle it dropped: the queue stalls for longer than the
            # test waits (seen within the first 20 of 500 kills). That is the client's
            # recovery, not the server's; without re-bootstrapping 300 kills ran through.
            "metadata.recovery.strategy": "none",
            "linger.ms": 1,
            "message.timeout.ms": 120_000,
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 100,
            "log_level": 0,
        }
    )
    sequence = 0
    for _kill in range(IDEMPOTENT_KILLS):
        target = len(acked) + 50
        deadline = time.monotonic() + 60
        while len(acked) < target:
            assert time.monotonic() < deadline, f"no progress after a restart: {failed[:3]}"
            for _ in range(20):
                producer.produce("t", value=b"%d" % sequence, on_delivery=report)
                sequence += 1
            producer.poll(0.005)
        for _ in range(50):
            producer.produce("t", value=b"%d" % sequence, on_delivery=report)
            sequence += 1
        serve.restart()
    assert producer.flush(120) == 0
    with Broker(serve.db) as broker:
        stored = {
            p: [int(r.value) for r in broker.fetch("t", p, 0, max_records=10**7)] for p in range(2)
        }
    values = [v for p in range(2) for v in stored[p]]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    assert {int(v) for v in acked} <= set(values), "acknowledged records lost"
    for p in range(2):
        assert stored[p] == sorted(stored[p]), f"partition {p} out of order"
    assert not failed, failed[:3]
    assert len(acked) >= IDEMPOTENT_KILLS * 50
