"""``consume --exec``: a command per record, committed only after it succeeds."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pubsub import Broker, Message
from tests.helpers import PUBSUB, cli_env, run_cli

pytestmark = pytest.mark.cli


@pytest.fixture
def jobs(db_path: Path) -> Path:
    with Broker(db_path) as broker:
        broker.create_topic("jobs")
        broker.create_topic("failed")
        broker.produce_batch(
            "jobs",
            [
                Message(b"one", key=b"k1", headers=[("trace", b"abc"), ("x-id", b"7")]),
                Message(b"two"),
                Message(b"bad"),
                Message(b"four"),
            ],
        )
    return db_path


def committed(db: Path) -> dict[int, int]:
    with Broker(db) as broker:
        return {tp.partition: o for tp, o in broker.committed_offsets("g").items()}


def test_success_commits_each_record(jobs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fields = '"$(cat)" "$PUBSUB_TOPIC" "$PUBSUB_PARTITION" "$PUBSUB_OFFSET"'
    optional = '"${PUBSUB_KEY-}" "${PUBSUB_HEADER_X_ID-}"'
    command = f'printf "%s|%s|%s|%s|%s|%s\\n" {fields} {optional} >> {out}'
    r = run_cli(jobs, "consume", "jobs", "-g", "g", "--exec", command)
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == [
        "one|jobs|0|0|k1|7",
        "two|jobs|0|1||",
        "bad|jobs|0|2||",
        "four|jobs|0|3||",
    ]
    assert committed(jobs) == {0: 4}
    again = run_cli(jobs, "consume", "jobs", "-g", "g", "--exec", f"cat >> {out}")
    assert again.returncode == 0 and len(out.read_text().splitlines()) == 4  # nothing new


def test_environment_carries_headers_as_json(jobs: Path, tmp_path: Path) -> None:
    out = tmp_path / "env"
    r = run_cli(
        jobs,
        "consume",
        "jobs",
        "-n",
        "1",
        "--exec",
        f'echo "$PUBSUB_HEADERS" > {out}; cat >/dev/null',
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == [["trace", "abc"], ["x-id", "7"]]


def test_failure_is_retried_then_stops_uncommitted(jobs: Path, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    command = f'v=$(cat); echo "$v $PUBSUB_ATTEMPT" >> {attempts}; [ "$v" != bad ]'
    r = run_cli(
        jobs, "consume", "jobs", "-g", "g", "--exec", command, "--retries", "2", "--backoff", "20ms"
    )
    assert r.returncode == 8
    stderr = r.stderr.decode()
    assert "error: jobs[0]@2: command failed (exit status 1) after 3 attempt(s)" in stderr
    assert "retry 1 of 2" in stderr and "retry 2 of 2" in stderr
    assert attempts.read_text().splitlines() == ["one 1", "two 1", "bad 1", "bad 2", "bad 3"]
    assert committed(jobs) == {0: 2}  # the failed record stays uncommitted
    # The next run starts again at the failed record.
    fixed = run_cli(jobs, "consume", "jobs", "-g", "g", "--exec", f"cat >> {tmp_path / 'rest'}")
    assert fixed.returncode == 0
    assert (tmp_path / "rest").read_text() == "badfour"
    assert committed(jobs) == {0: 4}


def test_dead_letter_moves_the_record_and_goes_on(jobs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = f'v=$(cat); [ "$v" != bad ] || exit 3; echo "$v" >> {out}'
    r = run_cli(
        jobs, "consume", "jobs", "-g", "g", "--exec", command,
        "--retries", "1", "--backoff", "10ms", "--dead-letter", "failed",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == ["one", "two", "four"]
    assert committed(jobs) == {0: 4}
    with Broker(jobs) as broker:
        [moved] = broker.fetch("failed", 0, 0)
        [original] = broker.fetch("jobs", 0, 2, max_records=1)
    assert (moved.value, moved.key) == (original.value, original.key) == (b"bad", None)
    assert dict(moved.headers) == {
        "pubsub.original.topic": b"jobs",
        "pubsub.original.partition": b"0",
        "pubsub.original.offset": b"2",
        "pubsub.original.timestamp": str(original.timestamp).encode(),
        "pubsub.error": b"exit status 3",
        "pubsub.attempts": b"2",
    }


def test_dead_letter_topic_must_exist(jobs: Path) -> None:
    r = run_cli(jobs, "consume", "jobs", "-g", "g", "--exec", "true", "--dead-letter", "nope")
    assert r.returncode == 3 and b"nope" in r.stderr
    assert committed(jobs) == {}


def test_command_that_ignores_stdin(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("big", config={"max.message.bytes": "4MiB"})
        broker.produce_batch("big", [b"x" * (3 << 20), b"y" * 70_000, b""])
    r = run_cli(db_path, "consume", "big", "-g", "g", "--exec", "true")
    assert r.returncode == 0, r.stderr
    assert b"Broken" not in r.stderr and b"Traceback" not in r.stderr
    with Broker(db_path) as broker:
        assert broker.committed_offsets("g") == {("big", 0): 3}


def test_order_is_kept_per_partition(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=3)
        for i in range(60):
            broker.produce("t", str(i).encode(), partition=i % 3)
    out = tmp_path / "out"
    r = run_cli(
        db_path,
        "consume",
        "t",
        "-g",
        "g",
        "--batch",
        "7",
        "--exec",
        f'echo "$PUBSUB_PARTITION $(cat)" >> {out}',
    )
    assert r.returncode == 0, r.stderr
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for line in out.read_text().splitlines():
        p, v = line.split()
        seen[int(p)].append(int(v))
    for p, values in seen.items():
        assert values == list(range(p, 60, 3))


def test_workers_share_the_work(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=6)
    out = tmp_path / "out"
    command = f'echo "$PUBSUB_PARTITION $PUBSUB_OFFSET $$" >> {out}'
    env = cli_env(db_path)
    workers = [
        subprocess.Popen(
            [PUBSUB, "consume", "t", "-g", "g", "-f", "--session-timeout", "2", "--exec", command],
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        time.sleep(1.5)
        with Broker(db_path) as broker:
            for i in range(120):
                broker.produce("t", str(i).encode(), partition=i % 6)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                out.exists()
                and len(out.read_text().splitlines()) >= 120
                and committed(db_path) == dict.fromkeys(range(6), 20)
            ):
                break
            time.sleep(0.1)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        results = [proc.communicate(timeout=30) for proc in workers]
    for proc, (_, err) in zip(workers, results, strict=True):
        assert proc.returncode == 130, err  # SIGTERM: finish cleanly, exit like Ctrl-C
        assert b"Traceback" not in err
    lines = [line.split() for line in out.read_text().splitlines()]
    done = {(int(p), int(o)) for p, o, _ in lines}
    assert done == {(p, o) for p in range(6) for o in range(20)}
    assert len(lines) == 120  # no record ran twice: hand-overs were clean
    assert len({pid for _, _, pid in lines}) >= 2  # the work was shared
    assert committed(db_path) == dict.fromkeys(range(6), 20)


def test_failed_record_is_retried_next_run_even_with_reset_latest(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("jobs")
    env = cli_env(db_path)
    worker = subprocess.Popen(
        [PUBSUB, "consume", "jobs", "-g", "g", "--reset", "latest", "-f", "--retries", "0",
         "--exec", "exit 3"],
        env=env,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not committed(db_path) and time.monotonic() < deadline:
        time.sleep(0.05)  # it joined and recorded where it starts
    with Broker(db_path) as broker:
        broker.produce("jobs", b"job")
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 8, err
    assert committed(db_path) == {0: 0}
    again = run_cli(db_path, "consume", "jobs", "-g", "g", "--reset", "latest", "--exec", "cat")
    assert again.returncode == 0 and again.stdout == b"job"


def test_sigterm_reaches_the_running_command(jobs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "trapped"
    started = tmp_path / "started"
    command = (
        f"trap 'echo term > {marker}; exit 143' TERM; touch {started}; while :; do sleep 0.05; done"
    )
    worker = subprocess.Popen(
        [PUBSUB, "consume", "jobs", "-g", "g", "--exec", command],
        env=cli_env(jobs),
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 130, err
    assert marker.read_text() == "term\n"  # the command got SIGTERM and could clean up
    assert committed(jobs) == {0: 0}  # the interrupted record stays uncommitted


def test_offset_flag_applies_to_partitions_handed_over_later(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=4)
        for p in range(4):
            broker.produce_batch("t", [b"v"] * 10, partition=p)
    env = cli_env(db_path)
    first = subprocess.Popen(
        [PUBSUB, "consume", "t", "-g", "g", "-f"], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while committed(db_path) != dict.fromkeys(range(4), 10) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        second = run_cli(
            db_path, "consume", "t", "-g", "g", "-o", "beginning", "-f", "--timeout", "3"
        )
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert second.returncode == 0, second.stderr
    # It got half the partitions from the first member, and read them from the beginning.
    assert second.stdout == b"v\n" * 20
