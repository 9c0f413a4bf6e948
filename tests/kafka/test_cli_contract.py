"""One contract, two backends: the same CLI calls on a database file and on a real Kafka broker.

Each test runs real ``pubsub`` processes against ``--db FILE`` and ``--db kafka://BROKER``
and checks the same observable results (stdout bytes, exit codes). Intended differences are
marked where they occur: a cluster reports no byte sizes or record ages.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import PUBSUB, cli_env
from tests.support.kafka import KafkaTarget

pytestmark = pytest.mark.kafka

Run = Callable[..., "subprocess.CompletedProcess[bytes]"]


@pytest.fixture(params=["file", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Run]:
    """(name, run): ``run(*args, input=...)`` runs pubsub against this backend's --db."""
    if request.param == "file":
        db = str(tmp_path / "contract.db")
    else:
        broker: KafkaTarget = request.getfixturevalue("kafka_broker")
        db = f"kafka://{broker.bootstrap}"
    env = cli_env(None)
    env["PUBSUB_DB"] = db
    env["PUBSUB_KAFKA_TIMEOUT"] = "20"

    def run(
        *args: str, input: bytes | None = None, timeout: float = 90
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [PUBSUB, *args], input=input, capture_output=True, timeout=timeout, env=env, check=False
        )

    return request.param, run


def topic_name() -> str:
    return "contract-" + uuid.uuid4().hex[:10]


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))
    return result.stdout


def test_produce_lines_and_consume_them_back(backend: tuple[str, Run]) -> None:
    _, run = backend
    t = topic_name()
    ok(run("topic", "create", t, "--partitions", "1"))
    ok(run("produce", t, input=b"one\ntwo\n\xff\x00binary\n"))
    assert ok(run("consume", t)) == b"one\ntwo\n\xff\x00binary\n"
    assert ok(run("consume", t, "-o", "-1")) == b"\xff\x00binary\n"
    assert ok(run("consume", t, "-o", "1", "-n", "1")) == b"two\n"
    assert ok(run("consume", t, "-o", "-0")) == b""


def test_keys_headers_and_json_envelope_round_trip(backend: tuple[str, Run]) -> None:
    _, run = backend
    t = topic_name()
    ok(run("topic", "create", t, "--partitions", "3"))
    ok(run("produce", t, "-K", ":", input=b"k1:v1\nk2:v2\nk1:v3\n"))
    lines = ok(run("consume", t, "--format", "json")).splitlines()
    records = [json.loads(line) for line in lines]
    by_key: dict[str, list[str]] = {}
    for r in records:
        by_key.setdefault(r["key"], []).append(r["value"])
    assert by_key == {"k1": ["v1", "v3"], "k2": ["v2"]}
    # Both keys of k1 went to one partition: the one murmur2 picks on either backend.
    assert len({r["partition"] for r in records if r["key"] == "k1"}) == 1
    envelope = json.dumps(
        {"key": "a", "value": "x", "headers": [["h", "1"], ["h", "2"]], "timestamp": 1700000000000}
    )
    ok(run("produce", t, "--format", "json", input=envelope.encode() + b"\n"))
    again = [json.loads(line) for line in ok(run("consume", t, "--format", "json")).splitlines()]
    new = [r for r in again if r["key"] == "a"]
    assert new and new[0]["headers"] == [["h", "1"], ["h", "2"]]
    assert new[0]["timestamp"] == 1700000000000


def test_keyed_records_land_on_the_same_partition_on_both(
    tmp_path: Path, kafka_broker: KafkaTarget
) -> None:
    t = topic_name()
    placements = []
    for db in (str(tmp_path / "p.db"), f"kafka://{kafka_broker.bootstrap}"):
        env = cli_env(None)
        env["PUBSUB_DB"] = db
        env["PUBSUB_KAFKA_TIMEOUT"] = "20"

        def run(*args: str, input: bytes | None = None, env: dict[str, str] = env) -> bytes:
            result = subprocess.run(
                [PUBSUB, *args], input=input, capture_output=True, timeout=90, env=env, check=False
            )
            assert result.returncode == 0, result.stderr
            return result.stdout

        run("topic", "create", t, "--partitions", "7")
        keys = [f"key-{i}".encode() for i in range(60)]
        run("produce", t, "-K", ":", input=b"".join(k + b":v\n" for k in keys))
        rows = [json.loads(line) for line in run("consume", t, "--format", "json").splitlines()]
        placements.append(sorted((r["key"], r["partition"]) for r in rows))
    assert placements[0] == placements[1]


def test_a_group_resumes_where_it_committed(backend: tuple[str, Run]) -> None:
    _, run = backend
    t = topic_name()
    group = "g-" + uuid.uuid4().hex[:6]
    ok(run("topic", "create", t))
    ok(run("produce", t, input=b"a\nb\nc\n"))
    assert ok(run("consume", t, "--group", group, "-n", "2")) == b"a\nb\n"
    ok(run("produce", t, input=b"d\n"))
    assert ok(run("consume", t, "--group", group)) == b"c\nd\n"
    assert ok(run("consume", t, "--group", group)) == b""
    described = json.loads(ok(run("group", "describe", group, "--json")).splitlines()[0])
    assert described["name"] == group
    assert described["lag"] == 0


def test_exec_commits_only_after_success(backend: tuple[str, Run], tmp_path: Path) -> None:
    _, run = backend
    t = topic_name()
    group = "x-" + uuid.uuid4().hex[:6]
    ok(run("topic", "create", t))
    ok(run("produce", t, input=b"1\n2\nbad\n4\n"))
    seen = tmp_path / "seen"
    handler = f'v=$(cat); echo "$v" >> {seen}; [ "$v" != bad ]'
    failed = run("consume", t, "--group", group, "--exec", handler, "--retries", "0")
    assert failed.returncode != 0
    assert seen.read_text().split() == ["1", "2", "bad"]
    # The failed record was not committed: a rerun starts from it.
    seen.unlink()
    run("consume", t, "--group", group, "--exec", "cat > /dev/null", "--retries", "0")
    assert ok(run("consume", t, "--group", group)) == b""


def test_topic_admin(backend: tuple[str, Run]) -> None:
    _, run = backend
    t = topic_name()
    ok(run("topic", "create", t, "--partitions", "2", "--retention", "1h"))
    described = json.loads(ok(run("topic", "describe", t, "--json")).splitlines()[0])
    assert described["partitions"] == 2
    assert described["config"]["retention.ms"] == "3600000"
    ok(run("topic", "alter", t, "--partitions", "3"))
    described = json.loads(ok(run("topic", "describe", t, "--json")).splitlines()[0])
    assert described["partitions"] == 3
    listed = [json.loads(line)["name"] for line in ok(run("topic", "list", "--json")).splitlines()]
    assert t in listed
    ok(run("produce", t, "-p", "0", input=b"a\nb\nc\n"))
    ok(run("topic", "truncate", t, "-p", "0", "--before", "2", "--yes"))
    assert ok(run("consume", t, "-p", "0")) == b"c\n"
    ok(run("topic", "delete", t, "--yes"))
    gone = run("consume", t)
    assert gone.returncode == 3, gone.stderr
    assert b"error:" in gone.stderr


def test_stats_show_the_records(backend: tuple[str, Run]) -> None:
    _, run = backend
    t = topic_name()
    ok(run("topic", "create", t))
    ok(run("produce", t, input=b"a\nb\n"))
    stats = json.loads(ok(run("stats", t, "--json")).splitlines()[0])
    topics = {topic["name"]: topic for topic in stats["topics"]}
    assert topics[t]["records"] == 2


def test_unknown_topic_is_exit_3(backend: tuple[str, Run]) -> None:
    _, run = backend
    result = run("produce", "no-such-" + uuid.uuid4().hex[:6], "v")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(b"error:")


def test_file_only_commands_refuse_a_cluster(kafka_broker: KafkaTarget) -> None:
    env = cli_env(None)
    env["PUBSUB_DB"] = f"kafka://{kafka_broker.bootstrap}"
    result = subprocess.run(
        [PUBSUB, "retention", "run"], capture_output=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 2
    assert b"error:" in result.stderr and b"hint:" in result.stderr
    assert b"retention" in result.stderr


def test_an_unreachable_cluster_fails_fast_with_exit_7() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    env = cli_env(None)
    env["PUBSUB_DB"] = f"kafka://127.0.0.1:{port}"
    env["PUBSUB_KAFKA_TIMEOUT"] = "2"
    started = time.monotonic()
    result = subprocess.run(
        [PUBSUB, "topic", "list"], capture_output=True, timeout=60, env=env, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 7, result.stderr
    assert f"127.0.0.1:{port}".encode() in result.stderr
    assert result.stderr.count(b"\n") <= 6, result.stderr  # no log flood
    assert elapsed < 30


def test_secrets_never_appear(kafka_broker: KafkaTarget, tmp_path: Path) -> None:
    config = tmp_path / "client.properties"
    config.write_text("sasl.password=hunter2-secret\n")
    os.chmod(config, 0o600)
    env = cli_env(None)
    env["PUBSUB_DB"] = "kafka://127.0.0.1:1?sasl.password=other-secret"
    env["PUBSUB_KAFKA_CONFIG"] = str(config)
    env["PUBSUB_KAFKA_TIMEOUT"] = "1"
    result = subprocess.run(
        [PUBSUB, "topic", "list"], capture_output=True, timeout=60, env=env, check=False
    )
    assert result.returncode != 0
    assert b"hunter2-secret" not in result.stderr + result.stdout
    assert b"other-secret" not in result.stderr + result.stdout


def test_the_readme_program_runs_on_both(tmp_path: Path, kafka_broker: KafkaTarget) -> None:
    """README's "the same program on both": one code path, a file and a cluster."""
    import pubsub

    topic = topic_name()
    seen = []
    for target in (str(tmp_path / "app.db"), f"kafka://{kafka_broker.bootstrap}"):
        with pubsub.connect(target) as client:
            client.create_topic(topic, partitions=3, if_not_exists=True)
            client.produce(topic, b'{"id": 1}', key="customer-9")
            with client.consumer(topic, group="billing-" + topic) as consumer:
                records = []
                deadline = time.monotonic() + 60
                while not records and time.monotonic() < deadline:
                    records = consumer.poll(timeout=5.0)
            seen.append([(r.partition, r.offset, r.key, r.value) for r in records])
    assert seen[0] == seen[1] == [(seen[0][0][0], 0, b"customer-9", b'{"id": 1}')]
