"""Worker processes for the fault suites: ``python workers.py MODE ARGS…``.

Every worker prints one line per acknowledged event on stdout, flushed at once, *after* the
call that it acknowledges returned; a worker killed in between leaves that event unprinted,
which is exactly the client's view. Lines:

- ``R`` — ready (imports done, database open);
- ``A <partition> <offset> <value>`` — a produce acknowledged (value is ASCII);
- ``D <member> <partition> <offset> <t>`` — a record delivered by ``poll`` (t: monotonic s);
- ``P <member> <t_before> <t_after>`` — a poll's window, printed before its deliveries;
- ``S <member> <partition> <t>`` — the member was assigned the partition (after the poll);
- ``C <member> <partition> <offset> <t>`` — a commit acknowledged;
- ``F <member> <partition> <offset>`` — a commit refused (fenced): not acknowledged.
"""

from __future__ import annotations

import os
import random
import sys
import time


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def produce(db: str, topic: str, name: str, seed: int, pace: float = 0.0) -> None:
    """Produce forever: single records, small and large batches, keyed and not; ``pace``
    seconds of sleep after each call."""
    from pubsub import Broker, Message

    rng = random.Random(seed)
    with Broker(db) as broker:
        out("R")
        seq = 0
        while True:
            choice = rng.random()
            if choice < 0.3:
                value = f"{name}-{seq}"
                meta = broker.produce(topic, value.encode(), key=f"k{seq % 11}")
                out(f"A {meta.partition} {meta.offset} {value}")
                seq += 1
            else:
                size = rng.choice((2, 10, 50, 400))
                values = [f"{name}-{seq + i}" for i in range(size)]
                keyed = rng.random() < 0.5
                result = broker.produce_batch(
                    topic,
                    [Message(v.encode(), key=f"k{i % 5}" if keyed else None) for i, v in
                     enumerate(values)],
                )  # fmt: skip
                out("\n".join(f"A {m.partition} {m.offset} {v}" for m, v in
                              zip(result, values, strict=True)))  # fmt: skip
                seq += size
            if pace:
                time.sleep(pace)  # pacing the producer


# The largest stays just under max.message.bytes (1 MiB), which counts the key too.
SIZES, WEIGHTS = (100, 1_000, 10_000, 100_000, 1_048_000), (60, 25, 13.8, 1, 0.2)


def sized_value(name: str, seq: int, size: int) -> bytes:
    """A value of ``size`` bytes that names its producer and sequence number."""
    head = f"{name}-{seq}|".encode()
    return head + b"x" * (size - len(head))


def produce_sized(db: str, topic: str, name: str, seed: int, pace: float) -> None:
    """Produce batches of 1-10 records of mixed sizes (100 B to 1 MiB) forever; each
    acknowledged record prints ``A <partition> <offset> <name-seq> <size>``."""
    from pubsub import Broker, Message

    rng = random.Random(seed)
    with Broker(db) as broker:
        out("R")
        seq = 0
        while True:
            count = rng.choice((1, 2, 5, 10))
            sizes = rng.choices(SIZES, WEIGHTS, k=count)
            messages = [Message(sized_value(name, seq + i, size), key=f"k{(seq + i) % 13}")
                        for i, size in enumerate(sizes)]  # fmt: skip
            result = broker.produce_batch(topic, messages)
            out("\n".join(f"A {m.partition} {m.offset} {name}-{seq + i} {sizes[i]}"
                          for i, m in enumerate(result)))  # fmt: skip
            seq += count
            time.sleep(pace)  # pacing the producer


def slow_reader(db: str, topic: str, pause: float) -> None:
    """A reader that takes one record at a time and dawdles over each (prints ``D`` lines)."""
    from pubsub import Consumer

    with Consumer(db, topic, max_poll_records=1) as consumer:
        out("R")
        while True:
            for record in consumer.poll(timeout=0.5):
                out(f"D slow {record.partition} {record.offset} {time.monotonic():.6f}")
            time.sleep(pause)  # a slow consumer, on purpose


def consume(db: str, topic: str, group: str, member: str, seed: int, session: float) -> None:
    """A group member: poll, "process" (print), sometimes pause, commit; forever."""
    from pubsub import Consumer
    from pubsub.errors import FencedError

    rng = random.Random(seed)

    def assigned(partitions: list[object]) -> None:
        now = time.monotonic()
        for tp in partitions:
            out(f"S {member} {tp.partition} {now:.6f}")  # type: ignore[attr-defined]

    with Consumer(
        db,
        topic,
        group=group,
        auto_commit=False,
        max_poll_records=rng.choice((10, 100, 300)),
        session_timeout=session,
        on_assign=assigned,
    ) as consumer:
        out("R")
        while True:
            before = time.monotonic()
            records = consumer.poll(timeout=0.05)
            after = time.monotonic()
            if not records:
                continue
            lines = [f"P {member} {before:.6f} {after:.6f}"]
            lines += [f"D {member} {r.partition} {r.offset} {after:.6f}" for r in records]
            out("\n".join(lines))
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.02)  # killed here: processed, not committed
            last: dict[int, int] = {}
            for r in records:
                last[r.partition] = r.offset + 1
            try:
                consumer.commit()
            except FencedError:
                for partition, offset in last.items():
                    out(f"F {member} {partition} {offset}")
                continue
            now = time.monotonic()
            out("\n".join(f"C {member} {p} {o} {now:.6f}" for p, o in sorted(last.items())))


def maintain(db: str, operation: str, argument: str) -> None:
    """One maintenance operation (or a stream of them), acknowledged with ``A`` lines."""
    from pubsub import Broker

    if operation == "migrate":
        out("R")
        with Broker(db) as broker:  # opening migrates
            out(f"A {broker.applied_migrations}")
        return
    with Broker(db) as broker:
        out("R")
        if operation == "create":
            for i in range(int(argument)):
                broker.create_topic(f"new{i}", partitions=4)
                out(f"A new{i}")
        elif operation == "delete":
            for i in range(int(argument)):
                broker.delete_topic(f"old{i}")
                out(f"A old{i}")
        elif operation in ("retention", "compact"):
            report = broker.run_retention([argument] if argument else None)
            out(f"A {report.deleted_records}")
        elif operation == "vacuum":
            out(f"A {broker.vacuum(full=argument == 'full')}")
        elif operation == "backup":
            out(f"A {broker.backup(argument)}")
        else:
            raise SystemExit(f"unknown operation {operation}")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if os.environ.get("PUBSUB_WORKER_NICE"):
        os.nice(int(os.environ["PUBSUB_WORKER_NICE"]))
    if mode == "produce":
        produce(args[0], args[1], args[2], int(args[3]), float(args[4]) if len(args) > 4 else 0)
    elif mode == "produce_sized":
        produce_sized(args[0], args[1], args[2], int(args[3]), float(args[4]))
    elif mode == "slow":
        slow_reader(args[0], args[1], float(args[2]))
    elif mode == "consume":
        consume(args[0], args[1], args[2], args[3], int(args[4]), float(args[5]))
    elif mode == "maintain":
        maintain(args[0], args[1], args[2] if len(args) > 2 else "")
    else:
        raise SystemExit(f"unknown mode {mode}")
