"""A kafka-python group member as its own process, for the tests.

``python -m tests.serve.kp_member BOOTSTRAP TOPIC GROUP``: prints one JSON line per event on
stdout — ``{"assigned": [partitions]}`` after each rebalance and ``{"p": P, "o": OFFSET}``
per record — and commits synchronously after each poll that returned records.
"""

from __future__ import annotations

import json
import sys

from kafka import ConsumerRebalanceListener, KafkaConsumer  # type: ignore[import-untyped]


def main() -> None:
    bootstrap, topic, group = sys.argv[1:4]
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
        max_poll_records=20,
    )

    def say(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: object) -> None:
            pass

        def on_partitions_assigned(self, assigned: list[object]) -> None:
            say({"assigned": sorted(tp.partition for tp in assigned)})  # type: ignore[attr-defined]

    consumer.subscribe([topic], listener=Listener())
    while True:
        batch = consumer.poll(timeout_ms=200)
        if batch:
            for records in batch.values():
                for r in records:
                    say({"p": r.partition, "o": r.offset})
            consumer.commit()


if __name__ == "__main__":
    main()
