"""Checks shared by the client tests: the topics each client script runs on, and what every
client's script must have observed (see ``tests/serve/client_script.py``)."""

from __future__ import annotations

import json
from typing import Any

from pubsub import Broker
from tests.helpers import run_cli
from tests.serve import client_script as spec
from tests.serve.support import ServeProcess

#: Records written by ``pubsub produce --format json`` that the clients must read back as
#: they were: binary and non-ASCII bytes, null and empty values, null header values.
FROM_CLI = [
    {"partition": 0, "timestamp": 1_600_000_000_000, "key": "k", "value": "plain"},
    {
        "partition": 0,
        "timestamp": 1_600_000_000_001,
        "key": {"base64": "AP8="},
        "value": {"base64": "gICA/w=="},
        "headers": [["b", {"base64": "/w=="}], ["n", None], ["b", "é"]],
    },
    {"partition": 1, "timestamp": 1_600_000_000_002, "key": None, "value": None},
    {"partition": 1, "timestamp": 1_600_000_000_003, "key": "", "value": "", "headers": []},
]


def prepare(serve: ServeProcess) -> None:
    """The script's topic and the topic written by ``pubsub produce``."""
    with Broker(serve.db) as broker:
        broker.create_topic("t", 1)
        broker.create_topic("from-cli", 2)
    lines = "".join(json.dumps(r) + "\n" for r in FROM_CLI).encode()
    done = run_cli(serve.db, "produce", "from-cli", "--format", "json", input=lines)
    assert done.returncode == 0, done.stderr


def consume_json(serve: ServeProcess, topic: str) -> list[dict[str, Any]]:
    done = run_cli(serve.db, "consume", topic, "--format", "json")
    assert done.returncode == 0, done.stderr
    return sorted(
        (json.loads(line) for line in done.stdout.splitlines()),
        key=lambda r: (r["partition"], r["offset"]),
    )


def check_script(serve: ServeProcess, observed: dict[str, Any], group: str) -> None:
    """What every client's script must have seen, and what pubsub itself sees after it."""
    assert {k: observed[k] for k in spec.expected("t")} == spec.expected("t")
    # What the client wrote, pubsub consume prints byte for byte ...
    printed = consume_json(serve, "t")
    assert printed[:-1] == observed["beginning"]
    assert printed[-1]["value"] == spec.json_bytes(spec.AFTER_END_VALUE)
    # ... and what pubsub produce wrote, the client read byte for byte.
    from_cli = consume_json(serve, "from-cli")
    assert observed["dump"] == from_cli
    assert [
        {k: r.get(k) for k in ("partition", "timestamp", "key", "value")} for r in from_cli
    ] == [{k: r.get(k) for k in ("partition", "timestamp", "key", "value")} for r in FROM_CLI]
    assert from_cli[1]["headers"] == FROM_CLI[1]["headers"]
    # The client's commit is the file's: pubsub group describe shows it, with its lag.
    described = json.loads(run_cli(serve.db, "group", "describe", group, "--json").stdout)
    [partition] = described["partitions"]
    total = len(spec.CODECS) * spec.PER_CODEC + 1
    assert (partition["committed_offset"], partition["lag"]) == (
        spec.COMMIT_OFFSET,
        total - spec.COMMIT_OFFSET,
    )
