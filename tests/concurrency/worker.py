"""Worker processes for the concurrency tests (run as a script: python worker.py MODE ...).

Each worker waits for a start time so that all of them hit the database together, then writes
what it did to stdout, one line per acknowledged item, for the test to check.
"""

import sys
import time


def wait_until(start: float) -> None:
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)  # every worker starts at one agreed wall-clock time


def produce(
    db: str, topic: str, producer: str, count: int, start: float, pace: float = 0.0
) -> None:
    from pubsub import Broker, Message

    with Broker(db) as broker:
        wait_until(start)
        sent = 0
        while sent < count:
            if sent % 3 == 0:
                # A single record, keyed by producer so that it spreads over partitions.
                value = f"{producer}:{sent}".encode()
                meta = broker.produce(topic, value, key=f"{producer}-{sent % 7}")
                print(meta.partition, meta.offset, value.decode(), flush=True)
                sent += 1
            else:
                size = min(1 + sent % 50, count - sent)
                values = [f"{producer}:{sent + i}".encode() for i in range(size)]
                result = broker.produce_batch(topic, [Message(v) for v in values])
                for meta, value in zip(result, values, strict=True):
                    print(meta.partition, meta.offset, value.decode(), flush=True)
                sent += size
            if pace:
                time.sleep(pace)  # pacing the producer


def open_only(db: str, start: float) -> None:
    from pubsub import Broker

    wait_until(start)
    with Broker(db) as broker:
        print(",".join(map(str, broker.applied_migrations)), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "produce":
        pace = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]), pace)
    elif mode == "open":
        open_only(sys.argv[2], float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")
