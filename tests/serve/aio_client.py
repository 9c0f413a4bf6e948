"""aiokafka as its own process, for the tests.

``python -m tests.serve.aio_client script BOOTSTRAP TOPIC GROUP [DUMP:PARTITIONS...]`` runs
the script of ``tests/serve/client_script.py`` and prints its observations as one JSON object
(each DUMP topic has PARTITIONS partitions).

``python -m tests.serve.aio_client member BOOTSTRAP TOPIC GROUP`` is a group member: one JSON
line per event on stdout — ``{"assigned": [partitions]}`` after each rebalance and
``{"p": P, "o": OFFSET}`` per record — committing (with metadata) what it read.

The producer does not ask for idempotence (aiokafka's default).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError  # type: ignore[import-untyped]
from aiokafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]

from tests.serve import client_script as spec

TIMEOUT_MS = 60_000


async def read_until(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> list[Any]:
    """The records from the consumer's position on ``tp`` up to ``end``."""
    records: list[Any] = []
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        records.extend(batch.get(tp, []))
    return records


def as_envelope(r: Any) -> dict[str, Any]:
    return spec.envelope(
        r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers)
    )


async def script(bootstrap: str, topic: str, group: str, dumps: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"produced": [], "acked_timestamps": []}
    tp = TopicPartition(topic, 0)
    for c, codec in enumerate(spec.CODECS):
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            acks="all",
            enable_idempotence=True,  # acks=all, a producer id and sequences
            linger_ms=1000,  # the ten records go in one batch (flush sends it)
            request_timeout_ms=TIMEOUT_MS,
        )
        await producer.start()
        try:
            futures = []
            for i in range(spec.PER_CODEC):
                key, value, headers, timestamp = spec.record(c, i)
                futures.append(
                    await producer.send(
                        topic, value, key=key, partition=0, timestamp_ms=timestamp, headers=headers
                    )
                )
            await producer.flush()
            for future in futures:
                md = await future
                out["produced"].append([md.partition, md.offset])
                out["acked_timestamps"].append(md.timestamp)
        finally:
            await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        # Wait for the reset that assign() started (auto_offset_reset, latest): it would
        # otherwise land after the seek and win.
        await consumer.position(tp)
        await consumer.seek_to_beginning(tp)
        out["beginning"] = [as_envelope(r) for r in await read_until(consumer, tp, end)]
        consumer.seek(tp, spec.BATCH_START)
        out["from_batch_start"] = [r.offset for r in await read_until(consumer, tp, end)]
        consumer.seek(tp, spec.MIDDLE)
        out["from_middle"] = [r.offset for r in await read_until(consumer, tp, end)]
        found = []
        for when in (spec.BASE_TIMESTAMP + 1000 * spec.TIME_PROBE, spec.BASE_TIMESTAMP * 2):
            at = (await consumer.offsets_for_times({tp: when}))[tp]
            found.append(None if at is None else at.offset)
        out["times"] = found
    finally:
        await consumer.stop()

    for reset in ("earliest", "latest"):
        fresh = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{group}-{reset}",
            auto_offset_reset=reset,
            enable_auto_commit=False,
            request_timeout_ms=TIMEOUT_MS,
        )
        await fresh.start()
        try:
            fresh.assign([tp])
            out[reset] = await fresh.position(tp)
        finally:
            await fresh.stop()

    tail = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS
    )
    await tail.start()
    try:
        tail.assign([tp])
        await tail.seek_to_end(tp)
        position = await tail.position(tp)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", request_timeout_ms=TIMEOUT_MS
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, spec.AFTER_END_VALUE, partition=0)
        finally:
            await producer.stop()
        [after] = await read_until(tail, tp, position + 1)
        out["end"] = [position, after.offset, spec.json_bytes(after.value)]
    finally:
        await tail.stop()

    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS,
    )
    await committer.start()
    try:
        committer.assign([tp])
        await committer.commit({tp: OffsetAndMetadata(spec.COMMIT_OFFSET, spec.COMMIT_METADATA)})
    finally:
        await committer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await admin.start()
    try:
        committed = (await admin.list_consumer_group_offsets(group))[tp]
        out["committed"] = [committed.offset, committed.metadata]
    finally:
        await admin.close()

    if dumps:
        dumper = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS
        )
        await dumper.start()
        try:
            out["dump"] = []
            for name, count in (d.rsplit(":", 1) for d in dumps):
                tps = [TopicPartition(name, p) for p in range(int(count))]
                dumper.assign(tps)
                ends = await dumper.end_offsets(tps)
                for part in tps:
                    await dumper.position(part)  # the reset assign() started, as above
                await dumper.seek_to_beginning(*tps)
                for part in tps:
                    records = await read_until(dumper, part, ends[part])
                    out["dump"].extend(as_envelope(r) for r in records)
        finally:
            await dumper.stop()
    return out


async def member(bootstrap: str, topic: str, group: str) -> None:
    def say(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: object) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            say({"assigned": sorted(tp.partition for tp in assigned)})

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
        max_poll_records=20,
    )
    consumer.subscribe([topic], listener=Listener())
    await consumer.start()
    tag = f"aiokafka member {os.getpid()}"
    # What was read and not committed yet: a commit refused during a rebalance is tried
    # again after the next fetch, for the partitions the member still owns.
    pending: dict[Any, Any] = {}
    while True:
        batch = await consumer.getmany(timeout_ms=200)
        for tp, records in batch.items():
            for r in records:
                say({"p": r.partition, "o": r.offset})
            pending[tp] = OffsetAndMetadata(records[-1].offset + 1, tag)
        owned = consumer.assignment()
        pending = {tp: o for tp, o in pending.items() if tp in owned}
        if pending:
            try:
                await consumer.commit(pending)
                pending = {}
            except CommitFailedError:
                pass  # the group is rebalancing; the next fetch takes part in it


def main() -> None:
    mode, bootstrap, topic, group, *dumps = sys.argv[1:]
    if mode == "script":
        print(json.dumps(asyncio.run(script(bootstrap, topic, group, dumps))))
    else:
        asyncio.run(member(bootstrap, topic, group))


if __name__ == "__main__":
    main()
