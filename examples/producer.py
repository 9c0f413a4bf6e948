"""Produce sensor readings with the Python API: one record, then a batch in one transaction.

Run: python examples/producer.py [DATABASE]   (default: ./demo.db)
"""

import json
import sys
import time

from pubsub import Broker, Message


def main(path: str) -> None:
    with Broker(path) as broker:
        broker.create_topic("readings", partitions=2, if_not_exists=True)

        # One record: durable (synchronous=FULL) when produce() returns.
        first = broker.produce(
            "readings",
            json.dumps({"sensor": "t1", "celsius": 21.5}),
            key="t1",
            headers=[("unit", "C")],
        )
        print(f"wrote {first.topic}[{first.partition}] offset {first.offset}")

        # A batch: all records or none, in one transaction.
        now = int(time.time() * 1000)
        batch = [
            Message(json.dumps({"sensor": f"t{i % 3}", "celsius": 20 + i}), key=f"t{i % 3}")
            for i in range(10)
        ]
        result = broker.produce_batch("readings", batch)
        for partition, (base, count) in sorted(result.offsets.items()):
            print(f"wrote {count} records to partition {partition} from offset {base}")
        print(
            "offset of the first record at or after now:",
            broker.offset_for_time("readings", 0, now),
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo.db")
