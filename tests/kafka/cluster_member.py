"""A consumer-group member in its own process, for the Kafka group tests.

    python -m tests.kafka.cluster_member BOOTSTRAP TOPIC GROUP

Consumes as a member of GROUP and prints one JSON line per change of its assignment
(``{"assigned": [[topic, partition], ...]}``) and per record (``{"record": [partition,
offset]}``), committing after each poll. Runs until killed or stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from pubsub.kafka.cluster import KafkaCluster


def main() -> None:
    bootstrap, topic, group = sys.argv[1:4]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    def say(payload: object) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    with KafkaCluster(f"kafka://{bootstrap}", timeout=10) as cluster:
        consumer = cluster.consumer(
            topic, group=group, auto_commit=False, session_timeout=6.0, max_poll_interval=30.0
        )
        say({"pid": os.getpid()})
        shown: list[list[object]] | None = None
        while not stop.is_set():
            records = consumer.poll(0.2)
            for record in records:
                say({"record": [record.partition, record.offset]})
            if records:
                consumer.commit()
            now = [[tp.topic, tp.partition] for tp in consumer.assignment]
            if now != shown:
                shown = now
                say({"assigned": now})
        consumer.close()


if __name__ == "__main__":
    main()
