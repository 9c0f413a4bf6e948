"""``consume --exec``: a command per record, committed only after it succeeds."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pubsub import Broker, Message
from tests.helpers import PUBSUB, cli_env, run_cli, wait_until

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


def group_settled(db: Path, members: int) -> bool:
    """Group ``g`` has ``members`` live members and each of its partitions a live owner."""
    with Broker(db) as broker:
        if not broker.list_groups():
            return False
        info = broker.describe_group("g")
    return (
        info.live_members == members
        and info.state == "stable"
        and all(p.owner is not None for p in info.partitions)
    )


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


def test_dead_letter_topic_is_created_when_missing(jobs: Path) -> None:
    args = ["consume", "jobs", "-g", "g", "--retries", "0", "--dead-letter", "jobs-dlq"]
    r = run_cli(jobs, *args, "--exec", '[ "$(cat)" != bad ]')
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(b"jobs-dlq") == 2  # created (once), then the record moved to it
    assert b"created topic jobs-dlq (1 partition) for dead letters" in r.stderr
    with Broker(jobs) as broker:
        assert broker.describe_topic("jobs-dlq").partitions == 1
        assert [m.value for m in broker.fetch("jobs-dlq", 0, 0)] == [b"bad"]
    again = run_cli(jobs, *args, "-o", "beginning", "--exec", "true")
    assert again.returncode == 0 and b"created" not in again.stderr


def test_dead_letter_cannot_be_a_topic_consumed(jobs: Path) -> None:
    r = run_cli(jobs, "consume", "jobs", "-g", "g", "--exec", "true", "--dead-letter", "jobs")
    assert r.returncode == 2 and b"--dead-letter" in r.stderr
    with Broker(jobs) as broker:
        broker.create_topic("jobs-failed")
    # A regular expression that also matches the dead-letter topic leaves it out.
    out = run_cli(
        jobs, "consume", "^jobs", "-g", "g", "--exec", "cat; echo", "--dead-letter", "jobs-failed"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"one\ntwo\nbad\nfour\n"


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
        wait_until(lambda: group_settled(db_path, 3), what="three members owning every partition")
        with Broker(db_path) as broker:
            for i in range(120):
                broker.produce("t", str(i).encode(), partition=i % 6)
        wait_until(
            lambda: (
                out.exists()
                and len(out.read_text().splitlines()) >= 120
                and committed(db_path) == dict.fromkeys(range(6), 20)
            ),
            timeout=60,
            what="every record run and committed",
            interval=0.1,
        )
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
    wait_until(lambda: committed(db_path), timeout=20, what="it to join and record where it starts")
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
    wait_until(started.exists, timeout=20, what="the command to start")
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
    wait_until(
        lambda: committed(db_path) == dict.fromkeys(range(4), 10),
        timeout=20,
        what="the first member to commit everything",
    )
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


def test_offset_flag_is_the_first_committed_position_of_a_new_group(db_path: Path) -> None:
    """A new group started with -o records that position, not the --reset one."""
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [f"v{i}".encode() for i in range(10)])
    r = run_cli(
        db_path, "consume", "t", "-g", "g", "-o", "-1", "--exec", "exit 1", "--retries", "0"
    )
    assert r.returncode == 8
    assert b"t[0]@9: command failed" in r.stderr and b"starts from this record" in r.stderr
    assert committed(db_path) == {0: 9}
    rerun = run_cli(db_path, "consume", "t", "-g", "g", "--exec", "cat; echo")
    assert rerun.returncode == 0 and rerun.stdout == b"v9\n"


def test_failure_after_moving_back_names_the_committed_offset(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [f"v{i}".encode() for i in range(10)])
        broker.commit_offsets("g", {("t", 0): 7})
    r = run_cli(db_path, "consume", "t", "-g", "g", "-o", "2", "--exec", "exit 1", "--retries", "0")
    assert r.returncode == 8
    assert b"starts from this record" not in r.stderr
    assert b"committed offset of t[0] is 7" in r.stderr
    assert committed(db_path) == {0: 7}  # -o moves this run, not the group's offset


@pytest.mark.parametrize(
    "handler",
    [
        'echo "$PUBSUB_OFFSET" >> "$STARTED"; cat; echo',  # dies of SIGPIPE
        'trap "" PIPE; echo "$PUBSUB_OFFSET" >> "$STARTED"; cat; echo',  # fails with EPIPE
    ],
    ids=["sigpipe", "epipe"],
)
def test_closed_stdout_ends_quietly(db_path: Path, tmp_path: Path, handler: str) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [f"job{i}".encode() for i in range(50)])
    started = tmp_path / "started"
    reader = subprocess.Popen(
        [PUBSUB, "consume", "jobs", "-g", "g", "--backoff", "10ms", "--exec", handler],
        env=cli_env(db_path, STARTED=str(started)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    got = [reader.stdout.readline() for _ in range(3)]  # what `| head -3` reads
    reader.stdout.close()
    err = reader.stderr.read()
    reader.stderr.close()
    assert reader.wait(timeout=60) == 0, err
    assert got == [b"job0\n", b"job1\n", b"job2\n"]
    # The handler may complain (cat: write error); pubsub neither retries nor fails.
    ours = [line for line in err.splitlines() if line.startswith((b"warning:", b"error:"))]
    assert ours == [] and b"Traceback" not in err, err
    runs = started.read_text().split()
    assert len(runs) == len(set(runs))  # the cut-off handler was not retried
    cut_off = int(runs[-1])
    assert cut_off >= 3
    assert committed(db_path) == {0: cut_off}  # everything before it, not it


def test_exec_timeout_stops_a_hung_command(jobs: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $! >> {pids}; wait"
    started = time.monotonic()
    r = run_cli(
        jobs, "consume", "jobs", "-g", "g", "-n", "2", "--exec", command, "--exec-timeout", "300ms",
        "--retries", "1", "--backoff", "10ms", "--dead-letter", "failed",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 60
    assert b"timed out after 300ms" in r.stderr and b"retry 1 of 1" in r.stderr
    with Broker(jobs) as broker:
        moved = broker.fetch("failed", 0, 0)
    assert [m.value for m in moved] == [b"one", b"two"]
    assert dict(moved[0].headers)["pubsub.error"] == b"timed out after 300ms"
    assert dict(moved[0].headers)["pubsub.attempts"] == b"2"
    assert committed(jobs) == {0: 2}
    for pid in pids.read_text().split():  # the command's children went with it
        assert not Path(f"/proc/{pid}").exists() or b"Z" in _proc_state(pid)


def test_exec_timeout_kills_a_command_that_ignores_sigterm(jobs: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"trap '' TERM; echo $$ >> {pids}; while :; do sleep 0.05; done"
    r = run_cli(
        jobs, "consume", "jobs", "-g", "g", "--exec", command, "--exec-timeout", "500ms",
        "--retries", "0",
    )  # fmt: skip
    assert r.returncode == 8
    assert b"jobs[0]@0: command failed (timed out after 500ms)" in r.stderr
    assert committed(jobs) == {0: 0}
    [pid] = pids.read_text().split()
    assert not Path(f"/proc/{pid}").exists() or b"Z" in _proc_state(pid)


def test_exec_timeout_needs_exec(jobs: Path) -> None:
    r = run_cli(jobs, "consume", "jobs", "--exec-timeout", "1s")
    assert r.returncode == 2 and b"--exec-timeout needs --exec" in r.stderr
    bad = run_cli(jobs, "consume", "jobs", "--exec", "true", "--exec-timeout", "soon")
    assert bad.returncode == 2 and b"invalid duration" in bad.stderr


def _proc_state(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1]
    except (OSError, IndexError):
        return b"Z"
