"""SIGKILL ``pubsub serve`` while a confluent-kafka producer writes: no acknowledged record is
lost. 20 kills in the suite; ``PUBSUB_SOAK=1`` makes it 200."""

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
