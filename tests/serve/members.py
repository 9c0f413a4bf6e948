"""Consumer-group member processes of any client, and the group-of-three test they share.

A member is a process printing one JSON line per event: ``{"assigned": [partitions]}`` after
each rebalance and ``{"p": P, "o": OFFSET}`` per record, committing what it read.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from pubsub import Broker, Message
from tests.helpers import cli_env, run_cli, wait_until
from tests.serve.support import ServeProcess

ROOT = Path(__file__).resolve().parents[2]


class MemberProcess:
    """A member process started from ``argv``, and what it printed."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        self.assigned: list[int] = []
        self.records: list[tuple[int, int]] = []
        self.stderr = b""
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.lock:
                if "assigned" in event:
                    self.assigned = event["assigned"]
                else:
                    self.records.append((event["p"], event["o"]))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        for thread in self.threads:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def group_of_three_survives_a_sigkill(
    serve: ServeProcess,
    member_argv: Callable[[str, str, str], list[str]],
    group: str,
    *,
    metadata_prefix: str,
    while_all_three_run: Callable[[list[MemberProcess]], None] | None = None,
) -> list[MemberProcess]:
    """Three members of ``group`` on a topic of 6 partitions take two each; one is SIGKILLed;
    the other two take its partitions over and read and commit everything, old and new.

    Every commit carries metadata starting with ``metadata_prefix``, which a Kafka client reads
    back. ``while_all_three_run(members)`` is called once the three have their partitions. Returns
    the members (stopped), for checks of the caller's own.
    """
    with Broker(serve.db) as broker:
        broker.create_topic("t", 6)
        broker.produce_batch("t", [Message(f"a{i}", partition=i % 6) for i in range(600)])
    members = [MemberProcess(member_argv(serve.bootstrap, "t", group)) for _ in range(3)]
    everyone = list(members)

    def diagnosis() -> str:
        return "; ".join(
            f"member {m.proc.pid} (exit {m.proc.poll()}): assigned {m.assigned}, "
            f"{len(m.records)} records, stderr {m.stderr[-2000:]!r}"
            for m in everyone
        )

    def wait(predicate: Callable[[], bool], what: str) -> None:
        try:
            wait_until(predicate, timeout=120, what=what, interval=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}; {diagnosis()}") from None

    try:
        wait(
            lambda: (
                sorted(p for m in members for p in m.assigned) == list(range(6))
                and all(len(m.assigned) == 2 for m in members)
            ),
            "three members with two partitions each",
        )
        if while_all_three_run is not None:
            while_all_three_run(members)
        victim = members.pop(0)
        lost = victim.assigned
        victim.stop(signal.SIGKILL)
        with Broker(serve.db) as broker:
            broker.produce_batch("t", [Message(f"b{i}", partition=i % 6) for i in range(600)])
        wait(
            lambda: sorted(p for m in members for p in m.assigned) == list(range(6)),
            f"the survivors took {lost} over",
        )

        def all_committed() -> bool:
            with Broker(serve.db) as broker:
                committed = broker.committed_offsets(group, "t")
            return sorted(committed.values()) == [200] * 6

        wait(all_committed, "every partition committed to its end")
        seen = {r for m in everyone for r in m.records}
        assert seen == {(p, o) for p in range(6) for o in range(200)}
    finally:
        for m in members:
            m.stop(signal.SIGTERM)
    described = json.loads(run_cli(serve.db, "group", "describe", group, "--json").stdout)
    assert {p["committed_offset"] for p in described["partitions"]} == {200}
    assert {p["lag"] for p in described["partitions"]} == {0}
    # Read with kafka-python: librdkafka takes commit metadata for a C string, and may read
    # past its end (librdkafka issue 4649), on Kafka too.
    reader = KafkaConsumer(bootstrap_servers=serve.bootstrap, group_id=group)
    try:
        committed = [reader.committed(TopicPartition("t", p), metadata=True) for p in range(6)]
    finally:
        reader.close()
    assert [c.offset for c in committed] == [200] * 6
    assert all(c.metadata.startswith(metadata_prefix) for c in committed), committed
    return everyone
