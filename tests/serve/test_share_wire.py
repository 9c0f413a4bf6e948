"""Share groups over the wire: Kafka's own share consumers on ``pubsub serve``, mixed with
native ``pubsub consume --share`` workers on one group, the share-session rules on raw
requests, and the same Java program against the real Kafka broker.

The Java program is tests/serve/java/ShareClient.java (a KafkaShareConsumer with explicit
acknowledgement), compiled with javac against the Kafka jars of the tests into the test cache.
Values say what to do with a record: ``a:`` accept, ``r:`` release on the first delivery and
accept on the next, ``x:`` reject.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pubsub import Broker
from pubsub.serve.share_wire import (
    FENCED_MEMBER_EPOCH,
    INVALID_RECORD_STATE,
    INVALID_SHARE_SESSION_EPOCH,
    SHARE_SESSION_NOT_FOUND,
)
from tests.helpers import PUBSUB, cli_env
from tests.serve.support import ServeProcess, call, connect
from tests.support.cache import cache_root, digest, fetch_once
from tests.support.kafka import TOOLS_LOG4J, KafkaTarget
from tests.support.kafka_jars import java_executable, kafka_libs

SOURCE = Path(__file__).parent / "java" / "ShareClient.java"


@pytest.fixture(scope="session")
def share_client_classes() -> Path:
    """The compiled ShareClient (built once per source and Kafka jars)."""
    libs = kafka_libs()
    javac = shutil.which("javac") or str(Path(java_executable()).with_name("javac"))
    entry = cache_root() / f"share-client-{digest(SOURCE.read_bytes(), str(libs))}"

    def build(staging: Path) -> None:
        subprocess.run(
            [javac, "-d", str(staging), "-cp", f"{libs}/*", str(SOURCE)],
            check=True,
            capture_output=True,
            timeout=300,
        )

    return fetch_once(entry, build)


class JavaShareClient:
    """ShareClient as a process; ``lines()`` are its decisions so far."""

    def __init__(
        self, classes: Path, bootstrap: str, group: str, topic: str, tmp: Path, pause_ms: int = 0
    ) -> None:
        self.stop_file = tmp / f"stop-{uuid.uuid4().hex[:6]}"
        self.out = tmp / f"java-{uuid.uuid4().hex[:6]}.out"
        self.err = self.out.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = self._start(classes, bootstrap, group, topic, pause_ms, out, err)

    def _start(
        self,
        classes: Path,
        bootstrap: str,
        group: str,
        topic: str,
        pause_ms: int,
        out: Any,
        err: Any,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                java_executable(),
                "-Xmx256m",
                "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={TOOLS_LOG4J}",
                "-cp",
                f"{classes}:{kafka_libs()}/*",
                "ShareClient",
                bootstrap,
                group,
                topic,
                str(self.stop_file),
                str(pause_ms),
            ],
            stdout=out,
            stderr=err,
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def finish(self) -> list[str]:
        self.stop_file.touch()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        assert self.proc.returncode == 0, self.err.read_text()[-3000:]
        return self.lines()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def values(count: int) -> list[str]:
    return [f"{'arx'[i % 3]}:{i}" for i in range(count)]


def produce_spread(db: Path, topic: str, texts: list[str], partitions: int) -> None:
    with Broker(db) as broker:
        for i, text in enumerate(texts):
            broker.produce(topic, text.encode(), partition=i % partitions)


def decided(db: Path, group: str) -> tuple[int, int]:
    with Broker(db) as broker:
        info = broker.describe_share_group(group)
    return (
        sum(p.accepted for p in info.partitions),
        sum(p.archived for p in info.partitions),
    )


def group_ready(db: Path, group: str, partitions: int) -> bool:
    with Broker(db) as broker:
        try:
            return len(broker.describe_share_group(group).partitions) == partitions
        except Exception:
            return False


# -- Java's KafkaShareConsumer and native workers on one group --------------------------------

NATIVE_SCRIPT = """
value=$(cat)
count=$PUBSUB_DELIVERY_COUNT
case "$value" in
  a:*) verdict=0 ;;
  r:*) if [ "$count" = 1 ]; then verdict=1; else verdict=0; fi ;;
  *) verdict=1 ;;
esac
if [ "$verdict" = 0 ]; then
  echo "ACCEPT $PUBSUB_PARTITION $PUBSUB_OFFSET $count $value" >> "$LOG"
elif [ "$count" -ge 5 ]; then
  echo "REJECT $PUBSUB_PARTITION $PUBSUB_OFFSET $count $value" >> "$LOG"
fi
exit $verdict
"""


def test_java_share_consumer_and_native_workers_decide_each_record_once(
    serve: ServeProcess, share_client_classes: Path, tmp_path: Path
) -> None:
    db = serve.db
    topic, group, partitions, count = "jobs", "workers", 3, 90
    with Broker(db) as broker:
        broker.create_topic(topic, partitions)
    java = JavaShareClient(share_client_classes, serve.bootstrap, group, topic, tmp_path)
    natives: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "native.log"
    script = tmp_path / "decide.sh"
    script.write_text(NATIVE_SCRIPT)
    try:
        # The Java member joins first: the group starts at the end (latest), as on Kafka.
        wait_for(lambda: group_ready(db, group, partitions), 120, "the Java member to join")
        for _ in range(2):
            natives.append(
                subprocess.Popen(
                    [
                        *(PUBSUB, "--db", str(db), "consume", topic, "--share", group, "-f"),
                        *("--exec", f"sh {script}", "--backoff", "0s", "--max-deliveries", "5"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**cli_env(db), "LOG": str(log)},
                )
            )
        texts = values(count)
        produce_spread(db, topic, texts, partitions)
        wanted = (sum(1 for t in texts if t[0] != "x"), sum(1 for t in texts if t[0] == "x"))
        wait_for(lambda: decided(db, group) == wanted, 180, f"{wanted} accepted/archived")
        java_lines = java.finish()
    finally:
        java.kill()
        for proc in natives:
            proc.send_signal(signal.SIGTERM)
        for proc in natives:
            proc.wait(30)
    assert decided(db, group) == wanted  # nothing decided twice after the end
    native_lines = log.read_text().splitlines() if log.exists() else []
    assert not any(line.startswith("FAILED") for line in java_lines), java_lines
    final = [
        line.split()
        for line in java_lines + native_lines
        if line.split()[0].upper() in ("ACCEPT", "REJECT")
    ]
    by_value = Counter(words[4] for words in final)
    assert sorted(by_value) == sorted(texts)
    assert set(by_value.values()) == {1}, [v for v, n in by_value.items() if n > 1]
    for words in final:
        assert words[0].upper() == ("REJECT" if words[4][0] == "x" else "ACCEPT"), words
    # Java's member and the native workers both took part; a released record came back with
    # its delivery count moved on, to whichever member got it.
    assert java_lines and native_lines
    assert all(int(w[3]) >= 2 for w in final if w[4][0] == "r")
    with Broker(db) as broker:
        info = broker.describe_share_group(group)
    assert all(p.start_offset == p.next_offset for p in info.partitions)
    assert "Traceback" not in serve.errors()


def native_worker(db: Path, topic: str, group: str, script: Path, log: Path) -> Any:
    return subprocess.Popen(
        [
            *(PUBSUB, "--db", str(db), "consume", topic, "--share", group, "-f"),
            *("--exec", f"sh {script}", "--backoff", "0s", "--max-deliveries", "5"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**cli_env(db), "LOG": str(log)},
    )


def test_records_a_killed_java_member_held_go_to_native_workers_when_its_locks_run_out(
    serve: ServeProcess, share_client_classes: Path, tmp_path: Path
) -> None:
    db = serve.db
    topic, group, partitions = "killed", "survivors", 2
    with Broker(db) as broker:
        broker.create_topic(topic, partitions)
    # It pauses 0.5 s holding each batch it polled: killed, it is holding one.
    java = JavaShareClient(share_client_classes, serve.bootstrap, group, topic, tmp_path, 500)
    log, script = tmp_path / "native.log", tmp_path / "decide.sh"
    script.write_text(NATIVE_SCRIPT)
    natives = []
    try:
        wait_for(lambda: group_ready(db, group, partitions), 120, "the Java member to join")
        texts = values(60)
        produce_spread(db, topic, texts, partitions)
        wait_for(lambda: len(java.lines()) >= 3, 120, "the Java member to decide")
        java.proc.send_signal(signal.SIGKILL)
        java.proc.wait(30)
        with Broker(db) as broker:
            info = broker.describe_share_group(group)
        held = {(p.partition, a[0]) for p in info.partitions for a in p.acquired}
        assert held, "the Java member held nothing when it was killed"
        natives = [native_worker(db, topic, group, script, log) for _ in range(2)]
        wanted = (40, 20)
        # The dead member's records come back once its 30 s locks run out.
        wait_for(lambda: decided(db, group) == wanted, 180, f"{wanted} accepted/archived")
    finally:
        java.kill()
        for proc in natives:
            proc.send_signal(signal.SIGTERM)
        for proc in natives:
            proc.wait(30)
    assert decided(db, group) == wanted
    native = [line.split() for line in log.read_text().splitlines()]
    again = {(int(w[1]), int(w[2])): int(w[3]) for w in native}
    for key in held:  # decided by a native worker, on a later delivery
        assert again.get(key, 0) >= 2, (key, again.get(key))
    decisions = Counter(w[4] for w in native) + Counter(
        line.split()[4] for line in java.lines() if line.split()[0] != "release"
    )
    assert max(decisions.values()) == 1  # no record decided twice


# -- confluent-kafka's ShareConsumer (librdkafka 2.16) -----------------------------------------


def test_confluent_share_consumer_accepts_releases_and_rejects(serve: ServeProcess) -> None:
    from confluent_kafka import AcknowledgeType, ShareConsumer

    db = serve.db
    topic, group = "tasks", "confluent-share"
    with Broker(db) as broker:
        broker.create_topic(topic, 2)
    texts = values(30)
    seen: Counter[str] = Counter()
    outcome: dict[str, str] = {}
    consumer = ShareConsumer(
        {
            "bootstrap.servers": serve.bootstrap,
            "group.id": group,
            "share.acknowledgement.mode": "explicit",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 120
        while not group_ready(db, group, 2):
            consumer.poll(0.2)
            assert time.monotonic() < deadline, "the member never joined"
        produce_spread(db, topic, texts, 2)
        while len(outcome) < len(texts):
            assert time.monotonic() < deadline, f"decided {len(outcome)} of {len(texts)}"
            for message in consumer.poll(0.5):
                if message.error():
                    continue
                value = message.value().decode()
                seen[value] += 1
                if value[0] == "x":
                    kind, verdict = AcknowledgeType.REJECT, "reject"
                elif value[0] == "r" and seen[value] == 1:
                    kind, verdict = AcknowledgeType.RELEASE, ""
                else:
                    kind, verdict = AcknowledgeType.ACCEPT, "accept"
                consumer.acknowledge(message, kind)
                if verdict:
                    assert value not in outcome
                    outcome[value] = verdict
            results = consumer.commit_sync(30)
            assert all(error is None for error in results.values()), results
    finally:
        consumer.close()
    assert decided(db, group) == (20, 10)
    assert {v for v, n in seen.items() if n == 2} == {t for t in texts if t[0] == "r"}


# -- the share-session rules on raw requests ---------------------------------------------------


def fetch_body(epoch: int, topic_id: uuid.UUID, acks: list[dict[str, Any]] | None = None) -> Any:
    return {
        "group_id": "raw",
        "member_id": "member-1",
        "share_session_epoch": epoch,
        "max_wait_ms": 0,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "max_records": 10,
        "batch_size": 10,
        "topics": [
            {
                "topic_id": topic_id,
                "partitions": [{"partition_index": 0, "acknowledgement_batches": acks or []}],
            }
        ],
        "forgotten_topics_data": [],
    }


def test_member_and_session_epochs(serve: ServeProcess) -> None:
    db = serve.db
    with Broker(db) as broker:
        broker.create_topic("raw-t", 1)
    sock = connect(serve.bootstrap)
    try:
        member_and_session_epochs(db, sock)
    finally:
        sock.close()


def member_and_session_epochs(db: Path, sock: socket.socket) -> None:
    join = call(
        sock,
        76,
        1,
        {"group_id": "raw", "member_id": "member-1", "member_epoch": 0}
        | {"subscribed_topic_names": ["raw-t"]},
    )
    assert join["error_code"] == 0 and join["member_epoch"] >= 1
    [assigned] = join["assignment"]["topic_partitions"]
    topic_id, epoch = assigned["topic_id"], join["member_epoch"]
    assert assigned["partitions"] == [0]
    steady = call(sock, 76, 1, {"group_id": "raw", "member_id": "member-1", "member_epoch": epoch})
    assert (steady["error_code"], steady["member_epoch"], steady["assignment"]) == (0, epoch, None)
    stale = call(sock, 76, 1, {"group_id": "raw", "member_id": "member-1", "member_epoch": 99})
    assert stale["error_code"] == FENCED_MEMBER_EPOCH
    unknown = call(sock, 76, 1, {"group_id": "raw", "member_id": "nobody", "member_epoch": 1})
    assert unknown["error_code"] == 25  # UNKNOWN_MEMBER_ID

    with Broker(db) as broker:
        for i in range(5):
            broker.produce("raw-t", f"v{i}".encode())
    # No session yet: epoch 1 is refused; epoch 0 opens one, with no acknowledgements in it.
    assert call(sock, 78, 1, fetch_body(1, topic_id))["error_code"] == SHARE_SESSION_NOT_FOUND
    ack = [{"first_offset": 0, "last_offset": 0, "acknowledge_types": [1]}]
    assert call(sock, 78, 1, fetch_body(0, topic_id, ack))["error_code"] == 42
    opened = call(sock, 78, 1, fetch_body(0, topic_id))
    assert opened["error_code"] == 0 and opened["acquisition_lock_timeout_ms"] == 30000
    [part] = opened["responses"][0]["partitions"]
    assert part["acquired_records"] == [{"first_offset": 0, "last_offset": 4, "delivery_count": 1}]
    assert call(sock, 78, 1, fetch_body(5, topic_id))["error_code"] == INVALID_SHARE_SESSION_EPOCH
    # Epoch 1: accept 0-1, release 2, reject 3 (4 stays held); and an offset never acquired.
    acks = [
        {"first_offset": 0, "last_offset": 3, "acknowledge_types": [1, 1, 2, 3]},
        {"first_offset": 9, "last_offset": 9, "acknowledge_types": [1]},
    ]
    second = call(sock, 78, 1, fetch_body(1, topic_id, acks))
    [part] = second["responses"][0]["partitions"]
    assert part["acknowledge_error_code"] == INVALID_RECORD_STATE  # offset 9
    assert part["acquired_records"] == [{"first_offset": 2, "last_offset": 2, "delivery_count": 2}]
    with Broker(db) as broker:
        [info] = broker.describe_share_group("raw").partitions
    assert (info.accepted, info.archived) == (2, 1)
    assert sorted(a[0] for a in info.acquired) == [2, 4]
    # ShareAcknowledge at epoch 0 is refused; at epoch 2 it accepts 2; -1 closes the session
    # and releases what is still held (offset 4).
    ack_body = {
        "group_id": "raw",
        "member_id": "member-1",
        "share_session_epoch": 0,
        "topics": [
            {
                "topic_id": topic_id,
                "partitions": [
                    {
                        "partition_index": 0,
                        "acknowledgement_batches": [
                            {"first_offset": 2, "last_offset": 2, "acknowledge_types": [1]}
                        ],
                    }
                ],
            }
        ],
    }
    assert call(sock, 79, 2, ack_body)["error_code"] == INVALID_SHARE_SESSION_EPOCH
    # Epoch 2: accept 2, a gap at 3 (ignored), renew the lock of 4 (v2).
    renew = {"first_offset": 2, "last_offset": 4, "acknowledge_types": [1, 0, 4]}
    topic = ack_body["topics"][0]
    done = call(
        sock,
        79,
        2,
        ack_body
        | {
            "share_session_epoch": 2,
            "topics": [
                topic
                | {"partitions": [{"partition_index": 0} | {"acknowledgement_batches": [renew]}]}
            ],
        },
    )
    assert done["error_code"] == 0 and done["acquisition_lock_timeout_ms"] == 30000
    assert done["responses"][0]["partitions"][0]["error_code"] == 0
    with Broker(db) as broker:
        [info] = broker.describe_share_group("raw").partitions
    assert [a[0] for a in info.acquired] == [4] and info.accepted == 3
    closed = call(sock, 79, 2, ack_body | {"share_session_epoch": -1, "topics": []})
    assert closed["error_code"] == 0
    with Broker(db) as broker:
        [info] = broker.describe_share_group("raw").partitions
    assert (info.accepted, info.archived, info.acquired) == (3, 1, ())
    assert call(sock, 78, 1, fetch_body(3, topic_id))["error_code"] == SHARE_SESSION_NOT_FOUND
    described = call(sock, 77, 1, {"group_ids": ["raw", "missing"]})
    raw, missing = described["groups"]
    assert raw["group_state"] == "Stable" and [m["member_id"] for m in raw["members"]] == [
        "member-1"
    ]
    assert raw["members"][0]["assignment"]["topic_partitions"][0]["topic_name"] == "raw-t"
    assert missing["error_code"] == 69  # GROUP_ID_NOT_FOUND
    left = call(sock, 76, 1, {"group_id": "raw", "member_id": "member-1", "member_epoch": -1})
    assert (left["error_code"], left["member_epoch"]) == (0, -1)


# -- the same Java program on the real Kafka broker -------------------------------------------


def run_java_until(
    classes: Path, bootstrap: str, group: str, topic: str, tmp: Path, wanted: int
) -> list[str]:
    java = JavaShareClient(classes, bootstrap, group, topic, tmp)
    try:
        wait_for(
            lambda: sum(1 for line in java.lines() if line.split()[0] != "release") >= wanted,
            180,
            f"{wanted} decisions",
        )
        return java.finish()
    finally:
        java.kill()


def test_the_java_share_consumer_sees_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess, share_client_classes: Path, tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    texts = values(24)
    topic = f"share-diff-{uuid.uuid4().hex[:8]}"
    group = f"share-diff-{uuid.uuid4().hex[:8]}"
    # Kafka: a topic, the group starting at the earliest offset, the records.
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(60)
    earliest = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[earliest])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i, text in enumerate(texts):
        producer.produce(topic, text.encode(), partition=i % 2)
    assert producer.flush(60) == 0
    # pubsub serve: the same, the group made by a native member at the earliest offset.
    with Broker(serve.db) as broker:
        broker.create_topic(topic, 2)
        with broker.share_consumer(topic, group=group) as native:
            assert native.poll(0) == []
    produce_spread(serve.db, topic, texts, 2)

    def observed(bootstrap: str) -> list[tuple[str, str, int]]:
        lines = run_java_until(share_client_classes, bootstrap, group, topic, tmp_path, len(texts))
        return sorted((w[4], w[0], int(w[3])) for w in (line.split() for line in lines))

    on_kafka = observed(kafka_broker.bootstrap)
    on_pubsub = observed(serve.bootstrap)
    assert on_pubsub == on_kafka
    expected = sorted(
        [(t, "accept", 1) for t in texts if t[0] == "a"]
        + [(t, "reject", 1) for t in texts if t[0] == "x"]
        + [(t, "release", 1) for t in texts if t[0] == "r"]
        + [(t, "accept", 2) for t in texts if t[0] == "r"]
    )
    assert on_pubsub == expected
    assert decided(serve.db, group) == (16, 8)
