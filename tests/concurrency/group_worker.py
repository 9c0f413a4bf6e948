"""A group member process for the group tests (run as a script).

    python group_worker.py DB TOPIC GROUP LOG [--session S] [--pause-in-batch SECONDS]
        [--per-record SECONDS]

It consumes until SIGTERM, then closes (leaving the group). Every event goes to LOG as one
line written with os.write (so it survives SIGKILL), stamped with CLOCK_MONOTONIC, which all
processes of the machine share:

    <ns> start <member>                  <ns> poll
    <ns> assign P,P,…                    <ns> revoke P,P,…
    <ns> proc P OFFSET VALUE             <ns> commit P=OFFSET,P=OFFSET,…
    <ns> fenced                          <ns> warn TEXT
    <ns> inbatch                         <ns> stop
"""

import argparse
import os
import signal
import time

from pubsub import Consumer, FencedError, TopicPartition


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("log")
    parser.add_argument("--session", type=float, default=1.0)
    parser.add_argument("--pause-in-batch", type=float, default=0.0)
    parser.add_argument("--per-record", type=float, default=0.0)
    args = parser.parse_args()

    fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def event(text: str) -> None:
        os.write(fd, f"{time.monotonic_ns()} {text}\n".encode())

    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    def names(tps: list[TopicPartition]) -> str:
        return ",".join(str(tp.partition) for tp in tps)

    consumer = Consumer(
        args.db,
        args.topic,
        group=args.group,
        session_timeout=args.session,
        auto_commit=False,
        max_poll_records=10,
        on_assign=lambda tps: event(f"assign {names(tps)}"),
        on_revoke=lambda tps: event(f"revoke {names(tps)}"),
        on_warning=lambda text: event(f"warn {text}"),
    )
    event(f"start {consumer.member_id}")
    try:
        while not stopping:
            event("poll")
            records = consumer.poll(timeout=0.3)
            for index, record in enumerate(records):
                value = (record.value or b"").decode()
                event(f"proc {record.partition} {record.offset} {value}")
                if args.per_record:
                    time.sleep(args.per_record)  # simulated work per record
                if index == 0 and args.pause_in_batch:
                    event("inbatch")
                    time.sleep(args.pause_in_batch)  # a slow batch, on purpose
            if records:
                positions = {tp: consumer.position(tp) for tp in consumer.assignment}
                try:
                    consumer.commit()
                except FencedError:
                    event("fenced")
                    continue
                event("commit " + ",".join(f"{tp.partition}={o}" for tp, o in positions.items()))
    finally:
        event("stop")
        consumer.close(commit=False)
        os.close(fd)


if __name__ == "__main__":
    main()
