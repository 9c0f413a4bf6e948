"""One client script, written for each client (aiokafka here, Java in ``java/ClientProbe.java``).

Each client produces the same records and makes the same observations, and prints them as one
JSON object; the tests compare it with what is expected here, with what ``pubsub consume
--format json`` prints, and with what the same client observes on a real Kafka broker.

The script, on a topic of one partition (``TOPIC``) and a group (``GROUP``):

1. For each codec, 10 records sent together (one batch) to partition 0: keys (one null),
   values (binary, non-ASCII UTF-8, one null), headers (duplicates, a binary and a null
   value), explicit timestamps. ``produced``: ``[partition, offset]`` per record, and
   ``acked_timestamps``: the timestamp each acknowledgement reports (not checked against an
   expectation: aiokafka 0.14 reports the first record's for a whole batch, on Kafka too).
2. ``beginning``: every record from the beginning, as ``pubsub consume --format json``
   objects; ``from_batch_start`` and ``from_middle``: the offsets read after a seek to the
   first record of the second codec's batch and to the middle of the third's.
3. ``times``: the offsets found for the timestamp of record 15 and for a later time (null).
4. ``earliest`` and ``latest``: where a consumer of a group with no commits starts with
   ``auto.offset.reset`` earliest and latest.
5. ``end``: a consumer placed at the end, then one more record produced: its position and
   the one record it reads (offset and value).
6. ``committed``: a commit of offset 17 with metadata ``"meta data"`` for GROUP, read back.
7. ``dump``: every record of each DUMP topic (written by ``pubsub produce``), as JSON objects.

Records are null-safe: JSON objects use the envelope's bytes convention (a UTF-8 string, null,
or ``{"base64": ...}``).
"""

from __future__ import annotations

import base64
from typing import Any

#: The codecs in the order the script sends them; every client here supports all of them.
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 10
BASE_TIMESTAMP = 1_700_000_000_000
BATCH_START = PER_CODEC  # the first record of the gzip batch
MIDDLE = 2 * PER_CODEC + PER_CODEC // 2  # the middle of the snappy batch
TIME_PROBE = 15
COMMIT_OFFSET = 17
COMMIT_METADATA = "meta data"
AFTER_END_VALUE = b"after the end"

Header = tuple[str, bytes | None]


def record(codec_index: int, i: int) -> tuple[bytes | None, bytes | None, list[Header], int]:
    """Key, value, headers and timestamp of record ``i`` of codec number ``codec_index``."""
    codec = CODECS[codec_index]
    offset = codec_index * PER_CODEC + i
    key = None if i == 4 else f"{codec}-k{i % 3}".encode()
    if i == 7:
        value: bytes | None = None
    elif i == 2:
        value = f"é€ {codec} ✓".encode()
    else:
        value = f"{codec}-{i}-".encode() + bytes([0, 255, i, 10, 34, 92])
    headers: list[Header] = [
        ("codec", codec.encode()),
        ("i", str(i).encode()),
        ("dup", b"1"),
        ("dup", b"\xff\x00"),
        ("nul", None),
    ]
    return key, value, headers, BASE_TIMESTAMP + 1000 * offset


def json_bytes(data: bytes | None) -> str | dict[str, str] | None:
    """Bytes as the JSON envelope writes them."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def envelope(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[Header],
) -> dict[str, Any]:
    """A record as ``pubsub consume --format json`` prints it."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": json_bytes(key),
        "value": json_bytes(value),
        "headers": [[name, json_bytes(v)] for name, v in headers],
    }


def expected_records(topic: str) -> list[dict[str, Any]]:
    """What ``beginning`` must hold."""
    out = []
    for c in range(len(CODECS)):
        for i in range(PER_CODEC):
            key, value, headers, timestamp = record(c, i)
            out.append(envelope(topic, 0, c * PER_CODEC + i, timestamp, key, value, headers))
    return out


def expected(topic: str) -> dict[str, Any]:
    """Every observation but ``dump``, as the script must report it on any correct broker."""
    total = len(CODECS) * PER_CODEC
    records = expected_records(topic)
    return {
        "produced": [[0, r["offset"]] for r in records],
        "beginning": records,
        "from_batch_start": list(range(BATCH_START, total)),
        "from_middle": list(range(MIDDLE, total)),
        "times": [TIME_PROBE, None],
        "earliest": 0,
        "latest": total,
        "end": [total, total, json_bytes(AFTER_END_VALUE)],
        "committed": [COMMIT_OFFSET, COMMIT_METADATA],
    }
