"""Consume as a group with the Python API: resume where the group stopped, commit progress.

Run: python examples/consumer.py [DATABASE]   (default: ./demo.db)
Run it twice: the second run finds nothing new, because the group committed its offsets.
"""

import json
import sys

from pubsub import Consumer


def main(path: str) -> None:
    # iter_timeout=0: stop at the end of the log instead of waiting for new records.
    with Consumer(path, "readings", group="dashboard", iter_timeout=0) as consumer:
        count = 0
        for record in consumer:
            reading = json.loads(record.value or b"{}")
            unit = dict(record.headers).get("unit", b"C").decode()
            where = f"{record.partition}:{record.offset}"
            print(f"{where} {reading['sensor']} {reading['celsius']} {unit}")
            count += 1
        # Leaving the with-block commits what was consumed (it would not after an exception).
    print(f"consumed {count} records")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo.db")
