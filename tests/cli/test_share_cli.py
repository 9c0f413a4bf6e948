"""Share groups from the outside: stats, metrics and top show their backlog; --dead-letter
without --exec catches records whose lock ran out on their last delivery; the documented
programs run; the interface is the one docs/queues.md promises.

Real files, real CLI subprocesses (and a real pseudo-terminal for the tables).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pubsub import AcknowledgeType, AsyncShareConsumer, Broker, ShareConsumer
from pubsub.errors import InvalidArgumentError
from tests.helpers import PUBSUB, Terminal, cli_env, lines, run_cli

pytestmark = pytest.mark.cli

ROOT = Path(__file__).parents[2]


def queue(db: Path, n: int = 10) -> None:
    """Topic jobs (1 partition) with values 0..n-1, and topic other with one record."""
    with Broker(db) as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [str(i).encode() for i in range(n)])
        broker.create_topic("other")
        broker.produce("other", b"x")


def hold_some(db: Path) -> ShareConsumer:
    """Share group q on jobs: 0 and 1 accepted, 2 rejected, 3, 4 and 5 held (locks of 10
    minutes), 6..9 never acquired."""
    consumer = ShareConsumer(db, "jobs", group="q", lock_timeout=600)
    first = consumer.acquire(0, 4)
    assert [r.offset for r in first] == [0, 1, 2, 3]
    consumer.acknowledge(first[0], "accept")
    consumer.acknowledge(first[1], AcknowledgeType.ACCEPT)
    consumer.acknowledge(first[2], "reject")
    consumer.commit()
    assert [r.offset for r in consumer.acquire(0, 2)] == [4, 5]
    return consumer


EXPECTED_PARTITION = {
    "topic": "jobs",
    "partition": 0,
    "start_offset": 3,
    "end_offset": 6,
    "next_offset": 10,
    "available": 4,
    "acquired": 3,
    "backlog": 7,
    "accepted": 2,
    "archived": 1,
}


def test_stats_json_shows_each_share_groups_backlog(db_path: Path) -> None:
    queue(db_path)
    with hold_some(db_path):
        data = json.loads(run_cli(db_path, "stats").stdout)  # piped: JSON
        (share,) = data["share_groups"]
        assert share == {
            "name": "q", "members": 1, "available": 4, "acquired": 3, "backlog": 7,
            "accepted": 2, "archived": 1, "topics": ["jobs"], "partitions": [EXPECTED_PARTITION],
        }  # fmt: skip
        # The same counts as group describe, which reads every lock.
        (info,) = [json.loads(x) for x in lines(run_cli(db_path, "group", "describe", "q").stdout)]
        (part,) = info["partitions"]
        assert (part["start_offset"], part["available"], len(part["acquired"])) == (3, 4, 3)
        assert data["groups"] == []  # share groups are not consumer groups
        only_other = json.loads(run_cli(db_path, "stats", "other", "--json").stdout)
        assert only_other["share_groups"] == []
        only_jobs = json.loads(run_cli(db_path, "stats", "jobs", "--json").stdout)
        assert [g["name"] for g in only_jobs["share_groups"]] == ["q"]
    # Closed: the member released what it held; nothing is in flight, nobody holds a lock.
    (share,) = json.loads(run_cli(db_path, "stats").stdout)["share_groups"]
    assert (share["members"], share["available"], share["acquired"], share["backlog"]) == (
        0, 7, 0, 7,
    )  # fmt: skip


def test_stats_counts_a_lock_that_ran_out_as_available(db_path: Path) -> None:
    queue(db_path, 3)
    consumer = ShareConsumer(db_path, "jobs", group="q", lock_timeout=0.2)
    assert len(consumer.acquire(0, 2)) == 2
    time.sleep(0.3)  # the locks run out (the counts are then checked, not the time)
    (share,) = json.loads(run_cli(db_path, "stats").stdout)["share_groups"]
    assert (share["members"], share["available"], share["acquired"]) == (0, 3, 0)
    consumer.close()


def test_metrics_show_each_share_groups_backlog(db_path: Path) -> None:
    queue(db_path)
    with hold_some(db_path):
        result = run_cli(db_path, "metrics")
    assert result.returncode == 0, result.stderr
    samples = {}
    types = {}
    for family in text_string_to_metric_families(result.stdout.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    where = (("group", "q"), ("partition", "0"), ("topic", "jobs"))
    assert samples[("pubsub_share_group_members", (("group", "q"),))] == 1
    assert samples[("pubsub_share_group_start_offset", where)] == 3
    assert samples[("pubsub_share_group_records_available", where)] == 4
    assert samples[("pubsub_share_group_records_acquired", where)] == 3
    assert samples[("pubsub_share_group_backlog", where)] == 7
    assert samples[("pubsub_share_group_records_accepted_total", where)] == 2
    assert samples[("pubsub_share_group_records_archived_total", where)] == 1
    assert types["pubsub_share_group_records_accepted"] == "counter"
    assert types["pubsub_share_group_backlog"] == "gauge"


def test_top_shows_share_groups(db_path: Path) -> None:
    queue(db_path)
    with hold_some(db_path):
        piped = run_cli(db_path, "top", timeout=20)  # not a terminal: one JSON snapshot
        assert piped.returncode == 0, piped.stderr
        (share,) = json.loads(piped.stdout)["share_groups"]
        assert (share["name"], share["backlog"]) == ("q", 7)
        with Terminal([PUBSUB, "top", "-i", "0.2"], cli_env(db_path, NO_COLOR="1")) as term:
            assert term.read_until(b"share groups"), term.text
            assert term.read_until(b"q: quit", count=2), term.text
            term.send(b"q")
            assert term.finish(timeout=10) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.text)
    # q: 1 member holding locks, 4 available, 3 acquired, 2 accepted, 1 archived
    assert re.search(r"q\s+1\s+4\s+3\s+2\s+[0-9.]+/s\s+1", text), text


def test_stats_table_on_a_terminal_lists_share_partitions(db_path: Path) -> None:
    queue(db_path)
    with hold_some(db_path), Terminal([PUBSUB, "stats"], cli_env(db_path, NO_COLOR="1")) as term:
        assert term.finish(timeout=20) == 0
    assert "share group" in term.text
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.text)
    assert re.search(r"q\s+jobs\s+0\s+3\s+4\s+3\s+2\s+1", text), text


# -- --dead-letter without --exec -------------------------------------------------------------


def start_stuck_member(db: Path, *args: str) -> subprocess.Popen[bytes]:
    """A stdout member whose reader never reads: its first write blocks with records held."""
    return subprocess.Popen(
        [PUBSUB, "consume", "jobs", "--share", "g", "--lock-timeout", "1s", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db),
    )


def window(db: Path) -> tuple[int, dict[int, int]]:
    """Share group g's records locked now, and its window's delivery-count histogram."""
    with Broker(db) as broker:
        if "g" not in {g.name for g in broker.list_share_groups()}:
            return 0, {}
        (part,) = broker.describe_share_group("g").partitions
        return len(part.acquired), part.deliveries


def wait_until(predicate: object, what: str, timeout: float = 30) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_dead_letter_without_exec_takes_records_whose_members_died(db_path: Path) -> None:
    """Members killed on every delivery of a record: the next member moves it to the
    dead-letter topic with the why-headers, and writes the other records."""
    with Broker(db_path) as broker:
        broker.create_topic("jobs")
        big = [b"A" * 100_000, b"B" * 100_000, b"C" * 100_000]  # more than a pipe holds
        broker.produce_batch("jobs", [*big, b"small"])
    for delivery in (1, 2):
        member = start_stuck_member(db_path, "--batch", "3")
        try:
            # The member took the three big records (this delivery of each): its first write
            # blocks, as nobody reads its stdout.
            wait_until(lambda d=delivery: window(db_path)[1] == {d: 3}, f"delivery {delivery}")
        finally:
            member.send_signal(signal.SIGKILL)
            member.communicate(timeout=30)
        wait_until(lambda: window(db_path)[0] == 0, "the dead member's locks to run out")
    result = run_cli(
        db_path, "consume", "jobs", "--share", "g", "--max-deliveries", "2",
        "--dead-letter", "jobs-dlq", "--lock-timeout", "300ms",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [b"small"]  # the three went to the dead-letter topic
    assert b"created topic jobs-dlq" in result.stderr
    with Broker(db_path) as broker:
        letters = broker.fetch("jobs-dlq", 0, 0)
    assert [r.value for r in letters] == big
    for offset, letter in enumerate(letters):
        headers = dict(letter.headers)
        assert headers["pubsub.original.topic"] == b"jobs"
        assert headers["pubsub.original.partition"] == b"0"
        assert headers["pubsub.original.offset"] == str(offset).encode()
        assert headers["pubsub.share.group"] == b"g"
        assert headers["pubsub.attempts"] == b"2"
        assert headers["pubsub.error"] == b"lock timed out on the last delivery"
    (share,) = json.loads(run_cli(db_path, "stats").stdout)["share_groups"]
    assert (share["accepted"], share["archived"], share["backlog"]) == (1, 3, 0)


def test_dead_letter_needs_exec_or_share(db_path: Path) -> None:
    queue(db_path, 1)
    result = run_cli(db_path, "consume", "jobs", "--dead-letter", "dlq")
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.startswith(b"error: --dead-letter needs --exec or --share")
    same = run_cli(db_path, "consume", "jobs", "--share", "g", "--dead-letter", "jobs")
    assert same.returncode == 2 and b"is a topic this command reads" in same.stderr


# -- the interface, to the letter -------------------------------------------------------------


def test_share_consumer_interface(db_path: Path) -> None:
    """ShareConsumer(target, topics, group=…): poll(timeout), acknowledge(record, kind) with
    the three kinds as strings or the enum, commit(), renew(), iteration, context manager,
    delivery_count on every record."""
    queue(db_path, 6)
    assert [k.value for k in AcknowledgeType] == ["accept", "release", "reject"]
    with ShareConsumer(str(db_path), ["jobs"], group="w", max_deliveries=2) as consumer:
        records = consumer.poll(1.0)
        assert [(r.offset, r.delivery_count) for r in records] == [(i, 1) for i in range(6)]
        consumer.renew()  # every held lock extended
        consumer.acknowledge(records[0], "accept")
        consumer.acknowledge(records[1], AcknowledgeType.RELEASE)
        consumer.acknowledge(records[2], "reject")
        consumer.acknowledge(records[3], AcknowledgeType.ACCEPT)
        consumer.acknowledge(records[4], "accept")
        consumer.acknowledge(records[5], "accept")
        consumer.commit()
        again = consumer.poll(1.0)
        assert [(r.offset, r.delivery_count) for r in again] == [(1, 2)]
        consumer.acknowledge(again[0], "accept")
        consumer.commit()
    with ShareConsumer(db_path, "jobs", group="it", iter_timeout=0) as consumer:
        seen = [(r.value, r.delivery_count) for r in consumer]  # each accepted in turn
    assert seen == [(str(i).encode(), 1) for i in range(6)]
    with ShareConsumer(db_path, "jobs", group="it") as consumer:
        assert consumer.poll(0) == []  # iteration accepted every record
    with (
        pytest.raises(InvalidArgumentError, match="invalid acknowledgement"),
        ShareConsumer(db_path, "jobs", group="bad") as consumer,
    ):
        (first, *_) = consumer.poll(0)
        consumer.acknowledge(first, "maybe")


def test_async_share_consumer_interface(db_path: Path) -> None:
    queue(db_path, 4)

    async def main() -> list[tuple[int, int]]:
        seen = []
        async with AsyncShareConsumer(db_path, "jobs", group="a", lock_timeout=30) as consumer:
            records = await consumer.poll(1.0)
            await consumer.renew()
            for record in records:
                seen.append((record.offset, record.delivery_count))
                await consumer.acknowledge(record, "release" if record.offset == 0 else "accept")
            await consumer.commit()
            (again,) = await consumer.poll(1.0)
            seen.append((again.offset, again.delivery_count))
            await consumer.acknowledge(again, AcknowledgeType.ACCEPT)
            await consumer.commit()
        return seen

    assert asyncio.run(main()) == [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2)]

    async def drain() -> list[bytes]:
        async with AsyncShareConsumer(db_path, "jobs", group="b", iter_timeout=0) as consumer:
            return [record.value async for record in consumer]  # each accepted in turn

    assert asyncio.run(drain()) == [b"0", b"1", b"2", b"3"]
    shares = json.loads(run_cli(db_path, "stats").stdout)["share_groups"]
    assert [(g["name"], g["accepted"], g["backlog"]) for g in shares] == [("a", 4, 0), ("b", 4, 0)]


def test_exec_sees_the_delivery_count_and_a_drained_member_exits_0(db_path: Path) -> None:
    queue(db_path, 2)
    result = run_cli(
        db_path, "consume", "jobs", "--share", "g", "--exec",
        'v=$(cat); echo "$v $PUBSUB_DELIVERY_COUNT $PUBSUB_SHARE_GROUP"; '
        '[ "$v" != 1 ] || [ "$PUBSUB_DELIVERY_COUNT" -ge 2 ]',
        "--backoff", "10ms",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # drained: nothing left to acquire
    assert sorted(lines(result.stdout)) == [b"0 1 g", b"1 1 g", b"1 2 g"]
    again = run_cli(db_path, "consume", "jobs", "--share", "g", "--exec", "cat")
    assert (again.returncode, again.stdout) == (0, b"")


# -- the documented programs run --------------------------------------------------------------


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    ("doc", "section"), [("README.md", "## Queues: share groups"), ("docs/queues.md", "")]
)
def test_the_documented_share_consumer_program_runs(tmp_path: Path, doc: str, section: str) -> None:
    text = (ROOT / doc).read_text()
    if section:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    program = python_blocks(text)[0]
    assert "ShareConsumer(" in program
    with Broker(tmp_path / "app.db") as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [b"ok-1", b"bad", b"ok-2"])
    prelude = (
        "import sys\n"
        "def handle(value):\n"
        "    if value == b'bad':\n"
        "        raise ValueError('bad value')\n"
        "    sys.stdout.write(value.decode() + '\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + program],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [b"ok-1", b"ok-2"]
    info = [json.loads(x) for x in lines(run_cli(tmp_path / "app.db", "group", "describe",
                                                 "workers").stdout)]  # fmt: skip
    (part,) = info[0]["partitions"]
    assert (part["accepted"], part["available"]) == (2, 1)  # the failure was released
