"""A share-group member for the process tests: acquires, "processes", accepts, and logs.

Usage: share_worker.py DB TOPIC GROUP LOG LOCK_TIMEOUT HOLD_MS [DEAD_LETTER]

Each line of LOG is one event, written with O_APPEND in one write (so lines of several
workers never interleave), stamped with the boot-time clock the store's locks use:

    acq PID OFFSET DELIVERY T_BEFORE T_AFTER   acquired (T: the clock around the poll)
    ok PID OFFSET DELIVERY T                   the accept of this delivery was committed
    fenced PID OFFSET DELIVERY T               the accept was refused (the lock ran out)

HOLD_MS is how long each batch is "processed" before it is accepted. With DEAD_LETTER, a
record whose lock ran out on its last delivery (the default max deliveries, 5) goes there.
SIGTERM closes the consumer (releasing what it holds) and exits 0.
"""

import os
import signal
import sys
import time

from pubsub import ShareConsumer, ShareFencedError


def now() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000


def main() -> None:
    db, topic, group, log_path, lock_timeout, hold_ms = sys.argv[1:7]
    dead_letter = sys.argv[7] if len(sys.argv) > 7 else None
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer = ShareConsumer(
        db,
        topic,
        group=group,
        lock_timeout=float(lock_timeout),
        max_poll_records=50,
        dead_letter=dead_letter,
    )
    os.write(log, f"ready {pid} 0 0 {now()}\n".encode())
    while not stop:
        before = now()
        records = consumer.acquire(0.2)
        after = now()
        if not records:
            continue
        os.write(
            log,
            "".join(
                f"acq {pid} {r.offset} {r.delivery_count} {before} {after}\n" for r in records
            ).encode(),
        )
        if int(hold_ms):
            time.sleep(int(hold_ms) / 1000)  # the work
        for record in records:
            consumer.acknowledge(record, "accept")
        refused: set[int] = set()
        try:
            consumer.commit()
        except ShareFencedError as exc:
            refused = {offset for _, _, offset in exc.records}
        stamp = now()
        os.write(
            log,
            "".join(
                f"{'fenced' if r.offset in refused else 'ok'} {pid} {r.offset} "
                f"{r.delivery_count} {stamp}\n"
                for r in records
            ).encode(),
        )
    consumer.close()


if __name__ == "__main__":
    main()
