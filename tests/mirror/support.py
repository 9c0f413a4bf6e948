"""What the mirror tests share: a sample of awkward records, running the mirror, and reading
both ends back through ``pubsub consume --format json`` to compare them record by record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from pubsub.records import Message
from tests.helpers import PUBSUB, cli_env

ORIGIN = "pubsub-origin"


def sample_messages(partitions: int, count: int = 40) -> list[Message]:
    """Records with every shape a record can have, spread over the partitions: text and
    binary keys and values, no key, tombstones, empty values, headers in order with
    duplicates, null and binary header values, and explicit timestamps."""
    out: list[Message] = []
    for i in range(count):
        key: bytes | None = (
            None if i % 5 == 0 else (f"key-{i}".encode() if i % 3 else bytes([0xFF, i % 256, 0x00]))
        )
        if i % 7 == 3:
            value: bytes | None = None  # a tombstone
        elif i % 11 == 4:
            value = b""
        elif i % 2:
            value = bytes([0x80 + i % 64, 0x00, 0xFE]) + os.urandom(8)  # not UTF-8
        else:
            value = f"value {i} ✓".encode()
        headers: list[tuple[str, bytes | None]] = []
        if i % 4 == 1:
            headers = [("trace", b"t1"), ("dup", b"a"), ("dup", b"b"), ("nul", None)]
        elif i % 4 == 2:
            headers = [("bin", bytes([0xC3, 0x28]))]
        out.append(
            Message(
                value,
                key=key,
                headers=headers or None,
                partition=i % partitions,
                timestamp=1_700_000_000_000 + i * 1000,
            )
        )
    return out


def run_pubsub(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PUBSUB, *args],
        capture_output=True,
        timeout=timeout,
        env=env or mirror_env(),
        check=False,
        input=input,
    )


def mirror_env(**extra: str) -> dict[str, str]:
    env = cli_env(None, **{"PUBSUB_KAFKA_TIMEOUT": "20", **extra})
    env.pop("PUBSUB_DB", None)
    return env


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout


def consume_json(
    target: str | Path, topic: str, *, missing_ok: bool = False
) -> list[dict[str, Any]]:
    """Every record of ``topic`` as ``pubsub consume --format json`` prints it, by
    (partition, offset); none for a topic not there yet with ``missing_ok``."""
    result = run_pubsub("--db", str(target), "consume", topic, "--format", "json")
    if missing_ok and result.returncode == 3:
        return []
    out = ok(result)
    records = [json.loads(line) for line in out.splitlines() if line]
    return sorted(records, key=lambda r: (r["partition"], r["offset"]))


def without_origin(record: dict[str, Any]) -> dict[str, Any]:
    """The fields a mirror keeps, with the origin header taken out."""
    headers = [h for h in record.get("headers") or [] if h[0] != ORIGIN]
    return {
        "partition": record["partition"],
        "key": record["key"],
        "value": record["value"],
        "timestamp": record["timestamp"],
        "headers": headers,
    }


def origins(record: dict[str, Any]) -> list[str]:
    return [h[1] for h in record.get("headers") or [] if h[0] == ORIGIN]


def assert_mirrored(
    source: list[dict[str, Any]], dest: list[dict[str, Any]], source_id: str | None = None
) -> None:
    """``dest`` holds exactly ``source``'s records, each once, in order per partition, with
    key, value, headers and timestamp kept and one origin header naming its source record."""
    assert [without_origin(r) for r in dest] == [without_origin(r) for r in source]
    for s, d in zip(source, dest, strict=True):
        found = origins(d)
        assert len(found) == 1, d
        sid, topic, partition, offset = found[0].rsplit("/", 3)
        assert (topic, int(partition), int(offset)) == (s["topic"], s["partition"], s["offset"])
        if source_id is not None:
            assert sid == source_id


def file_id(path: str | Path) -> str:
    from pubsub.broker import Broker
    from pubsub.mirror.files import file_id as read_id

    with Broker(path, create=False) as broker:
        return read_id(broker)


def start_mirror(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A following mirror process (stop it with :func:`stop_mirror`)."""
    return subprocess.Popen(
        [PUBSUB, "mirror", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or mirror_env(),
    )


def stop_mirror(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, bytes, bytes]:
    """SIGTERM, then wait: (exit code, stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
