"""SIGKILL a running ``pubsub mirror`` at random points, again and again, while the source
keeps growing; then let it finish and check that the destination holds every source record
exactly once (read_committed on Kafka), in order, with every field kept.

20 kills per direction in the suite; ``PUBSUB_SOAK=1`` makes it 500.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import pubsub
from pubsub.broker import Broker
from tests.mirror.support import (
    assert_mirrored,
    consume_json,
    ok,
    run_pubsub,
    sample_messages,
    start_mirror,
)

KILLS = 500 if os.environ.get("PUBSUB_SOAK") else 20
PARTITIONS = 2
PER_ROUND = 300


def _source(
    request: pytest.FixtureRequest, tmp_path: Path, direction: str, topic: str
) -> tuple[str, str, Callable[[int], None]]:
    """(source, destination, produce(n)) for a direction."""
    kafka_url = ""
    if "kafka" in direction:
        broker = request.getfixturevalue("kafka_broker")
        kafka_url = f"kafka://{broker.bootstrap}"
    if direction.startswith("kafka"):
        source = kafka_url
        with pubsub.connect(source, timeout=20) as cluster:
            # The records carry timestamps of 2023: time retention would delete them
            # whenever the broker's retention check runs (every five minutes).
            cluster.create_topic(topic, PARTITIONS, {"retention.ms": "-1"})

        def produce(n: int) -> None:
            with pubsub.connect(source, timeout=20) as cluster:
                cluster.produce_batch(topic, sample_messages(PARTITIONS, n))

    else:
        source = str(tmp_path / "source.db")
        with Broker(source) as b:
            b.create_topic(topic, PARTITIONS)

        def produce(n: int) -> None:
            with Broker(source) as b:
                b.produce_batch(topic, sample_messages(PARTITIONS, n))

    dest = kafka_url if direction.endswith("kafka") else str(tmp_path / "dest.db")
    return source, dest, produce


@pytest.mark.parametrize("direction", ["file-to-file", "file-to-kafka", "kafka-to-file"])
def test_killed_mirrors_resume_exactly_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    direction: str,
    record_summary,  # type: ignore[no-untyped-def]
) -> None:
    rng = random.Random(f"mirror-kill-{direction}")
    topic = f"kill-{uuid.uuid4().hex[:8]}"
    source, dest, produce = _source(request, tmp_path, direction, topic)
    name = f"killed-{uuid.uuid4().hex[:6]}"
    args = (source, dest, topic, "--name", name, "--batch-records", "37")
    # Start-up costs more with a Kafka end (librdkafka, fencing, reading positions back).
    longest = 3.0 if "kafka" in direction else 1.0
    produced = 0
    for _ in range(KILLS):
        produce(PER_ROUND)
        produced += PER_ROUND
        proc = start_mirror(*args)
        try:
            time.sleep(rng.uniform(0.05, longest))  # the random point to kill at
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the mirror exited on its own"
    ok(run_pubsub("mirror", *args, "--once"))
    source_records = consume_json(source, topic)
    assert len(source_records) == produced
    dest_records = consume_json(dest, topic)
    assert_mirrored(source_records, dest_records)  # each once, in order, fields kept
    if not dest.startswith("kafka://"):
        with Broker(dest) as b:
            assert b.check(quick=True) == []
    record_summary(
        f"mirror kill ({direction})",
        faults=f"{KILLS} SIGKILLs",
        checks="every record once, in order, fields kept",
        records=produced,
    )
