"""Live tailing across processes: wake-ups, checkpoints, idle cost, asyncio, rebalances."""

import asyncio
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pubsub import AsyncConsumer, AsyncProducer, Broker
from pubsub.db.notify import MAX_INTERVAL
from tests.helpers import PUBSUB, cli_env, wait_until

pytestmark = pytest.mark.concurrency


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no record arrived in time"
    return proc.stdout.readline()


def produce_in_another_process(db: Path, value: str) -> None:
    subprocess.run([PUBSUB, "produce", "t", value], env=cli_env(db), check=True)


#: Wake-ups measured per run: a median over this many rounds.
WAKEUP_ROUNDS = 25
#: How long the follower idles before each record, drawn from this range: long enough for
#: the polling fallback's back-off to reach its longest pause (0.5 ms doubling to
#: MAX_INTERVAL within 0.1 s), and spread over more than one such pause, so that records do
#: not arrive in step with a poller that restarted its back-off when it delivered the last.
IDLE_BEFORE_RECORD = (0.15, 0.25)
#: The median wake-up an inotify follower must beat: a tenth of the fallback's longest pause.
#: A poller that idled into that pause wakes uniformly within it (median MAX_INTERVAL / 2,
#: give or take 4 ms over 25 rounds), so this bound fails when inotify wake-ups break; an
#: inotify follower takes well under a millisecond.
INOTIFY_WAKEUP_BOUND = MAX_INTERVAL / 10


def wakeup_latencies(db: Path, env: dict[str, str], rounds: int) -> list[float]:
    """Seconds from a produce's commit (in this process) to its record on the stdout of a
    ``pubsub consume -f`` running in another process, one idle follower wake-up per round."""
    with Broker(db) as broker:
        broker.create_topic("t")
        follower = subprocess.Popen(
            [PUBSUB, "consume", "t", "-f"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            broker.produce("t", b"ready")
            assert read_line(follower, 30) == b"ready\n"  # it runs and follows the topic
            latencies = []
            rng = random.Random(rounds)
            for i in range(rounds):
                # Pacing, not synchronisation: what is measured is the wake-up of a follower
                # that has been idle for a while.
                time.sleep(rng.uniform(*IDLE_BEFORE_RECORD))
                broker.produce("t", b"r%d" % i)
                committed = time.monotonic()
                assert read_line(follower, 10) == b"r%d\n" % i
                latencies.append(time.monotonic() - committed)
            return latencies
        finally:
            follower.terminate()
            follower.communicate(timeout=10)


def test_follower_in_another_process_is_woken_by_inotify(db_path: Path) -> None:
    """Every record reaches an idle follower in another process, and the median wake-up
    beats what the polling fallback can do (run with ``PUBSUB_NO_INOTIFY=1`` to see it fail)."""
    latencies = wakeup_latencies(db_path, cli_env(db_path), WAKEUP_ROUNDS)
    median = statistics.median(latencies)
    assert median < INOTIFY_WAKEUP_BOUND, (
        f"median wake-up {median * 1000:.1f} ms over {len(latencies)} rounds (bound "
        f"{INOTIFY_WAKEUP_BOUND * 1000:.0f} ms; the polling fallback pauses up to "
        f"{MAX_INTERVAL * 1000:.0f} ms): inotify wake-ups do not work"
    )


def test_follower_without_inotify_still_wakes_by_polling(db_path: Path) -> None:
    """With inotify off the fallback delivers every record, within its longest pause (with
    room for a loaded machine)."""
    env = cli_env(db_path, PUBSUB_NO_INOTIFY="1")
    latencies = wakeup_latencies(db_path, env, WAKEUP_ROUNDS)
    median = statistics.median(latencies)
    assert median < 2 * MAX_INTERVAL, f"median wake-up {median * 1000:.1f} ms by polling"


def test_follower_survives_checkpoints_and_vacuum(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
    follower = subprocess.Popen(
        [PUBSUB, "consume", "t", "-f"],
        env=cli_env(db_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        produce_in_another_process(db_path, "before")
        assert read_line(follower, 10) == b"before\n"
        with Broker(db_path) as broker:
            conn = broker.store.connection
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        assert (db_path.parent / (db_path.name + "-wal")).stat().st_size == 0
        produce_in_another_process(db_path, "after truncate")
        assert read_line(follower, 10) == b"after truncate\n"
        with Broker(db_path) as broker:
            broker.vacuum(full=True)
        produce_in_another_process(db_path, "after vacuum")
        assert read_line(follower, 10) == b"after vacuum\n"
    finally:
        follower.terminate()
        follower.communicate(timeout=10)


def test_idle_follower_costs_nothing(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce("t", b"ready")
    follower = subprocess.Popen(
        [PUBSUB, "consume", "t", "-f"],
        env=cli_env(db_path),
        stdout=subprocess.PIPE,
    )
    try:
        assert read_line(follower, 30) == b"ready\n"  # it started and caught up: now idle
        fields = Path(f"/proc/{follower.pid}/stat").read_text().rsplit(")", 1)[1].split()
        before = int(fields[11]) + int(fields[12])
        time.sleep(2.0)  # the thing under test: what the follower costs over 2 s of idling
        fields = Path(f"/proc/{follower.pid}/stat").read_text().rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12]) - before) / os.sysconf("SC_CLK_TCK")
        assert used < 0.2, f"an idle follower used {used:.2f} s of CPU in 2 s"
    finally:
        follower.terminate()
        follower.communicate(timeout=10)


def test_asyncio_consumer_never_blocks_the_loop(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)

    async def scenario() -> tuple[float, list[bytes]]:
        worst = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)  # the thing under test: how late each tick wakes
                now = time.monotonic()
                worst = max(worst, now - last - 0.01)
                last = now

        tick = asyncio.create_task(ticker())
        got: list[bytes] = []
        async with AsyncConsumer(db_path, "t", group="g", session_timeout=5) as consumer:
            # Another process produces while the consumer waits and reads.
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys, time\n"
                "from pubsub import Broker\n"
                "with Broker(sys.argv[1]) as b:\n"
                "    for i in range(20):\n"
                "        time.sleep(0.02)\n"  # pacing: records arrive while the loop runs
                "        b.produce('t', b'v%d' % i)\n",
                str(db_path),
            )
            async for record in consumer:
                assert record.value is not None
                got.append(record.value)
                if len(got) == 20:
                    break
            await consumer.commit()
            await proc.wait()
        async with AsyncProducer(db_path) as producer:
            meta = await producer.produce("t", b"async", partition=0)
            assert meta.topic == "t"
            result = await producer.produce_batch("t", [b"a", b"b"])
            assert len(result) == 2
        stop.set()
        await tick
        return worst, got

    worst, got = asyncio.run(scenario())
    assert sorted(got) == sorted(b"v%d" % i for i in range(20))
    assert worst < 0.05, f"the event loop was blocked for {worst * 1000:.0f} ms"
    with Broker(db_path) as broker:
        assert sum(broker.committed_offsets("g").values()) == 20


def test_clean_leave_is_noticed_at_once(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=4)
    env = cli_env(db_path)
    members = [
        subprocess.Popen(
            [PUBSUB, "consume", "t", "-g", "g", "-f", "--session-timeout", "30"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        with Broker(db_path) as broker:

            def owners() -> set[str | None]:
                if not broker.list_groups():
                    return set()  # the members have not joined yet
                return {p.owner for p in broker.describe_group("g").partitions}

            def shared_by(n: int) -> bool:
                held = owners()
                return len(held) == n and None not in held

            wait_until(lambda: shared_by(2), timeout=30, what="the members to share the partitions")
            members[0].send_signal(signal.SIGTERM)
            members[0].wait(timeout=30)
            wait_until(
                lambda: shared_by(1),
                timeout=5,
                what="the survivor to take over (not after the session timeout)",
                interval=0.02,
            )
    finally:
        for proc in members:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
