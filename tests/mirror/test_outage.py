"""A mirror into Kafka through outages: the broker stopped, then hung (SIGSTOP), while the
source file keeps taking records. The mirror never exits on its own; once the broker is back
every record arrives, once (read_committed)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from pubsub.broker import Broker
from tests.helpers import PUBSUB, wait_until
from tests.mirror.support import (
    assert_mirrored,
    consume_json,
    mirror_env,
    sample_messages,
)
from tests.support.kafka import KafkaBroker

pytestmark = pytest.mark.kafka


def test_a_mirror_rides_out_a_stopped_and_a_hung_broker(
    tmp_path: Path, kafka_process: KafkaBroker
) -> None:
    url = f"kafka://{kafka_process.bootstrap}"
    source = tmp_path / "source.db"
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    with Broker(source) as broker:
        broker.create_topic(topic, 2)
        broker.produce_batch(topic, sample_messages(2, 50))
    log = tmp_path / "mirror.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [PUBSUB, "mirror", str(source), url, topic, "--name", "through-outages"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=mirror_env(PUBSUB_KAFKA_TIMEOUT="5"),
        )
    total = 50

    def arrived() -> bool:
        return len(consume_json(url, topic, missing_ok=True)) == total

    def produce(n: int) -> None:
        nonlocal total
        with Broker(source) as broker:
            broker.produce_batch(topic, sample_messages(2, n))
        total += n

    try:
        wait_until(arrived, timeout=120, interval=0.5, what="the first records")
        # 1. The broker stops; the file keeps taking records.
        kafka_process.stop()
        produce(40)
        wait_until(
            lambda: b"destination unreachable" in log.read_bytes(),
            timeout=120,
            interval=0.2,
            what="the mirror to notice the outage",
        )
        produce(30)
        assert proc.poll() is None, log.read_text()
        kafka_process.start()
        wait_until(arrived, timeout=180, interval=0.5, what="the records after the restart")
        # 2. The broker hangs (SIGSTOP): connections stay open, nothing answers.
        kafka_process.pause()
        produce(25)
        wait_until(
            lambda: log.read_bytes().count(b"destination unreachable") >= 2,
            timeout=120,
            interval=0.2,
            what="the mirror to notice the hang",
        )
        assert proc.poll() is None, log.read_text()
        kafka_process.resume()
        wait_until(arrived, timeout=180, interval=0.5, what="the records after the hang")
    finally:
        kafka_process.ensure_running()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()
    assert_mirrored(consume_json(source, topic), consume_json(url, topic))
    assert b"resumed" in log.read_bytes() or b"reachable again" in log.read_bytes()
