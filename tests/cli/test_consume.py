"""``pubsub consume``: start and stop points, several topics, key output, write failures."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from pubsub import Broker, Message, TopicPartition
from tests.helpers import PUBSUB, Invoker, cli_env, run_cli, wait_until

pytestmark = pytest.mark.cli

HOUR = 3_600_000
MINUTE = 60_000


def committed(db: Path, group: str = "g") -> dict[tuple[str, int], int]:
    with Broker(db) as broker:
        return {(tp.topic, tp.partition): o for tp, o in broker.committed_offsets(group).items()}


@pytest.fixture
def ten(cli: Invoker) -> Invoker:
    """Topic t: partitions 0 and 1 with v0..v9 each; topic u: one partition with u0..u2."""
    with Broker(cli.db_path) as broker:
        broker.create_topic("t", partitions=2)
        for p in range(2):
            broker.produce_batch("t", [f"p{p}-{i}".encode() for i in range(10)], partition=p)
        broker.create_topic("u")
        broker.produce_batch("u", [f"u{i}".encode() for i in range(3)])
    return cli


@pytest.fixture
def timed(cli: Invoker) -> tuple[Invoker, int]:
    """Topic t, one partition: records stamped 2 h, 90 min, 20 min and 2 min ago."""
    now = int(time.time() * 1000)
    ages = [2 * HOUR, 90 * MINUTE, 20 * MINUTE, 2 * MINUTE]
    with Broker(cli.db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch(
            "t", [Message(f"age{i}", timestamp=now - a) for i, a in enumerate(ages)]
        )
    return cli, now


# -- -o ---------------------------------------------------------------------------------------


def test_minus_zero_is_nothing_before_the_end(ten: Invoker) -> None:
    r = ten("consume", "t", "-o", "-0")
    assert r.exit_code == 0, r
    assert r.stdout == ""
    assert ten("consume", "t", "-o", "-1").stdout.splitlines() == ["p0-9", "p1-9"]


def test_offset_past_the_end_warns_and_succeeds(ten: Invoker) -> None:
    """kcat and kafka-console-consumer reset an out-of-range offset and go on; so does pubsub."""
    r = ten("consume", "t", "-o", "100")
    assert r.exit_code == 0, r
    assert r.stdout == ""
    assert "past the log end" in r.stderr
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| 3 |")]
    assert "out of range" not in row  # the table promises what the command does


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@-1h", ["age2", "age3"]),
        ("@-30m", ["age2", "age3"]),
        ("@-3m30s", ["age3"]),
        ("@-100m", ["age1", "age2", "age3"]),
        ("@-1d", ["age0", "age1", "age2", "age3"]),
        ("@-0s", []),
    ],
)
def test_relative_start_time(timed: tuple[Invoker, int], spec: str, expected: list[str]) -> None:
    cli, _ = timed
    r = cli("consume", "t", "-o", spec)
    assert r.exit_code == 0, r
    assert r.stdout.splitlines() == expected


@pytest.mark.parametrize("spec", ["@-", "@-1", "@-h", "@--1h", "@-1h-", "@-1x"])
def test_bad_relative_time(timed: tuple[Invoker, int], spec: str) -> None:
    cli, _ = timed
    r = cli("consume", "t", "-o", spec)
    assert r.exit_code == 2, r
    assert "invalid time" in r.stderr and "@-DURATION" in r.stderr and r.stdout == ""


def test_reset_offsets_to_a_relative_time(timed: tuple[Invoker, int]) -> None:
    cli, _ = timed
    with Broker(cli.db_path) as broker:
        broker.commit_offsets("g", {("t", 0): 0})
    r = cli("group", "reset-offsets", "g", "--topic", "t", "--to-datetime", "-1h", "--json")
    assert r.exit_code == 0, r
    [plan] = [json.loads(line) for line in r.stdout.splitlines()]
    assert plan["new_offset"] == 2


# -- --until ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--until", "3"], [f"p{p}-{i}" for p in range(2) for i in range(3)]),
        (["-o", "2", "--until", "4"], [f"p{p}-{i}" for p in range(2) for i in (2, 3)]),
        (["--until", "0"], []),
        (["--until", "50"], [f"p{p}-{i}" for p in range(2) for i in range(10)]),
        (["-o", "5", "--until", "3"], []),
        (["--until", "3", "-n", "2", "-p", "1"], ["p1-0", "p1-1"]),
        (["--until", "2", "--format", "%p:%o\\n"], ["0:0", "0:1", "1:0", "1:1"]),
    ],
)
def test_until_an_offset(ten: Invoker, args: list[str], expected: list[str]) -> None:
    r = ten("consume", "t", *args)
    assert r.exit_code == 0, r
    assert sorted(r.stdout.splitlines()) == sorted(expected)


def test_until_a_time_replays_a_window(timed: tuple[Invoker, int]) -> None:
    cli, now = timed
    r = cli("consume", "t", "-o", "@-100m", "--until", "@-10m")
    assert r.exit_code == 0, r
    assert r.stdout.splitlines() == ["age1", "age2"]
    assert cli("consume", "t", "--until", "@-1h").stdout.splitlines() == ["age0", "age1"]
    absolute = cli("consume", "t", "--until", f"@{now - 30 * MINUTE}")
    assert absolute.stdout.splitlines() == ["age0", "age1"]
    assert cli("consume", "t", "--until", "@-3h").stdout == ""


def test_until_with_a_group_commits_up_to_the_stop(ten: Invoker) -> None:
    r = ten("consume", "t", "-g", "g", "--until", "4")
    assert r.exit_code == 0, r
    assert len(r.stdout.splitlines()) == 8
    assert committed(ten.db_path) == {("t", 0): 4, ("t", 1): 4}
    rest = ten("consume", "t", "-g", "g")
    assert sorted(rest.stdout.splitlines()) == [f"p{p}-{i}" for p in range(2) for i in range(4, 10)]


@pytest.mark.parametrize("spec", ["-3", "soon", "@tomorrow", "3.5", ""])
def test_bad_until(ten: Invoker, spec: str) -> None:
    r = ten("consume", "t", "--until", spec)
    assert r.exit_code == 2, r
    assert "--until" in r.stderr and r.stdout == ""


def test_until_with_exec(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [f"j{i}".encode() for i in range(6)])
    out = tmp_path / "out"
    r = run_cli(db_path, "consume", "jobs", "-g", "g", "--until", "4", "--exec", f"cat >> {out}")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "j0j1j2j3"
    assert committed(db_path) == {("jobs", 0): 4}


def test_follow_until_an_offset_waits_for_it_then_exits(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [b"a", b"b"])
    follower = subprocess.Popen(
        [PUBSUB, "consume", "t", "-g", "g", "-f", "--until", "4"],
        env=cli_env(db_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: committed(db_path).get(("t", 0)) == 2,
            timeout=20,
            what="it to read what was there and wait for more",
        )
        assert follower.poll() is None
        with Broker(db_path) as broker:
            broker.produce_batch("t", [b"c", b"d", b"e"])
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, err
    assert out == b"a\nb\nc\nd\n"
    assert committed(db_path) == {("t", 0): 4}


def test_follow_until_a_time_stops_at_the_first_record_at_or_after_it(db_path: Path) -> None:
    now = int(time.time() * 1000)
    stop = now + 600_000  # well in the future: only the record stamped after it ends the run
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce("t", b"before")
    follower = subprocess.Popen(
        [PUBSUB, "consume", "t", "-g", "g", "-f", "--until", f"@{stop}"],
        env=cli_env(db_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: committed(db_path).get(("t", 0)) == 1,
            timeout=20,
            what="it to read what was there and wait for more",
        )
        assert follower.poll() is None
        with Broker(db_path) as broker:
            broker.produce_batch(
                "t", [Message(b"inside"), Message(b"at-stop", timestamp=stop), Message(b"after")]
            )
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, err
    assert out == b"before\ninside\n"
    assert committed(db_path) == {("t", 0): 2}  # the record at the stop is the next to read


def test_follow_until_a_time_ends_idle_partitions_when_the_clock_gets_there(
    db_path: Path,
) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce("t", b"old", partition=0)
    stop = int(time.time() * 1000) + 1500
    started = time.monotonic()
    r = run_cli(db_path, "consume", "t", "-f", "--until", f"@{stop}", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"old\n"
    assert time.time() * 1000 >= stop and time.monotonic() - started < 20


# -- several topics ---------------------------------------------------------------------------


def test_several_topics(ten: Invoker) -> None:
    r = ten("consume", "t", "u", "--format", "%t %s\\n")
    assert r.exit_code == 0, r
    expected = [f"t p{p}-{i}" for p in range(2) for i in range(10)] + [f"u u{i}" for i in range(3)]
    assert sorted(r.stdout.splitlines()) == sorted(expected)
    assert ten("consume", "u", "t", "u", "-o", "-1").stdout.splitlines().count("u2") == 1


def test_a_caret_argument_is_a_regular_expression(ten: Invoker) -> None:
    with Broker(ten.db_path) as broker:
        broker.create_topic("tu")
        broker.produce("tu", b"tu0")
    r = ten("consume", "^t", "-o", "-1", "--format", "%t:%s\\n")
    assert r.exit_code == 0, r
    assert sorted(r.stdout.splitlines()) == ["t:p0-9", "t:p1-9", "tu:tu0"]
    exact = ten("consume", "^t$", "-o", "-1", "--format", "%t:%s\\n")
    assert sorted(exact.stdout.splitlines()) == ["t:p0-9", "t:p1-9"]
    anywhere = ten("consume", "^.*u", "-o", "-1", "--format", "%t:%s\\n")
    assert sorted(anywhere.stdout.splitlines()) == ["tu:tu0", "u:u2"]


def test_a_regular_expression_matching_nothing(ten: Invoker) -> None:
    r = ten("consume", "^nothing")
    assert r.exit_code == 3, r
    assert "matches no topic" in r.stderr and "hint:" in r.stderr and r.stdout == ""
    bad = ten("consume", "^(")
    assert bad.exit_code == 2 and "regular expression" in bad.stderr
    missing = ten("consume", "t", "nope")
    assert missing.exit_code == 3 and "nope" in missing.stderr and missing.stdout == ""


def test_several_topics_with_a_group_and_partitions(ten: Invoker) -> None:
    r = ten("consume", "t", "u", "-g", "g", "-n", "100")
    assert r.exit_code == 0, r
    assert len(r.stdout.splitlines()) == 23
    assert committed(ten.db_path) == {("t", 0): 10, ("t", 1): 10, ("u", 0): 3}
    only = ten("consume", "t", "u", "-p", "0", "-o", "-1")
    assert sorted(only.stdout.splitlines()) == ["p0-9", "u2"]
    short = ten("consume", "t", "u", "-p", "1")
    assert short.exit_code == 2 and "'u' has no partition 1" in short.stderr


def test_a_group_shares_the_partitions_of_several_topics(db_path: Path) -> None:
    with Broker(db_path) as broker:
        for name in ("a", "b"):
            broker.create_topic(name, partitions=2)
            for p in range(2):
                broker.produce_batch(name, [b"x"] * 5, partition=p)
    env = cli_env(db_path)
    args = [PUBSUB, "consume", "^[ab]$", "-g", "g", "-f", "--format", "%t %p %o\\n"]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        want = {(t, p): 5 for t in "ab" for p in range(2)}
        wait_until(lambda: committed(db_path) == want, what="the group to commit everything")

        def owners() -> set[str] | None:
            with Broker(db_path) as broker:
                partitions = broker.describe_group("g").partitions
            held = {p.owner for p in partitions if p.owner is not None}  # None: in hand-over
            return held if len(held) >= 2 else None

        held = wait_until(owners, what="both members to own partitions")
    finally:
        for proc in (first, second):
            proc.terminate()
        outs = [proc.communicate(timeout=30)[0] for proc in (first, second)]
    assert committed(db_path) == want
    assert len(held) == 2  # both members got a share of the four partitions
    seen = [line for out in outs for line in out.decode().splitlines()]
    assert len(seen) >= 20 and {tuple(line.split()[:2]) for line in seen} == {
        (t, str(p)) for t in "ab" for p in range(2)
    }


def test_several_topics_with_exec(ten: Invoker, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli(
        ten.db_path, "consume", "u", "t", "-p", "0", "-o", "-1",
        "--exec", f'echo "$PUBSUB_TOPIC $(cat)" >> {out}',
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(out.read_text().splitlines()) == ["t p0-9", "u u2"]


# -- -K ---------------------------------------------------------------------------------------


def test_key_separator_prints_key_and_value(cli: Invoker) -> None:
    with Broker(cli.db_path) as broker:
        broker.create_topic("k")
        broker.produce_batch("k", [Message(b"v1", key=b"a"), Message(b"v2"), Message(None, b"c")])
    r = cli("consume", "k", "-K", ":")
    assert r.exit_code == 0, r
    assert r.stdout == "a:v1\n:v2\nc:\n"
    assert cli("consume", "k", "-K", "\\t", "-0").stdout_bytes == b"a\tv1\0\tv2\0c\t\0"
    for other in (["--format", "json"], ["--format", "%s\\n"]):
        bad = cli("consume", "k", "-K", ":", *other)
        assert bad.exit_code == 2 and "-K" in bad.stderr
    assert cli("consume", "k", "-K", "").exit_code == 2


def test_key_separator_round_trips_through_produce(cli: Invoker) -> None:
    with Broker(cli.db_path) as broker:
        broker.create_topic("k")
        broker.create_topic("copy")
        broker.produce_batch("k", [Message(b"v1", key=b"a"), Message(b"v:2", key=b"b")])
    out = cli("consume", "k", "-K", "\\t").stdout_bytes
    assert cli("produce", "copy", "-K", "\\t", input=out).exit_code == 0
    with Broker(cli.db_path) as broker:
        copied = [(r.key, r.value) for r in broker.fetch("copy", 0, 0)]
    assert copied == [(b"a", b"v1"), (b"b", b"v:2")]


# -- write failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True])
def test_a_batch_that_could_not_be_written_is_not_committed(db_path: Path, follow: bool) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [b"v"] * 10)
    extra = ["-f", "--timeout", "5"] if follow else []
    with open("/dev/full", "wb") as full:
        r = subprocess.run(
            [PUBSUB, "consume", "t", "-g", "g", *extra],
            env=cli_env(db_path),
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert r.returncode == 7, r.stderr
    assert b"error: cannot write to stdout" in r.stderr and b"Traceback" not in r.stderr
    assert committed(db_path) == {("t", 0): 0}
    # A reader that is already gone: quietly, and nothing committed either.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        closed = subprocess.run(
            [PUBSUB, "consume", "t", "-g", "g", *extra],
            env=cli_env(db_path),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert closed.returncode == 0 and closed.stderr == b""
    assert committed(db_path) == {("t", 0): 0}


# -- help -------------------------------------------------------------------------------------


def test_help_shows_the_new_habits() -> None:
    r = subprocess.run(
        [PUBSUB, "consume", "--help"],
        env=cli_env(None, COLUMNS="400", NO_COLOR="1"),
        capture_output=True,
        timeout=30,
        check=False,
    )
    text = " ".join(r.stdout.decode().split())
    assert r.returncode == 0
    assert "committed at a time (default 2000" in text and "at a time ." not in text
    assert "a pipe cannot tell" in text.lower()
    examples = [line.strip() for line in r.stdout.decode().splitlines() if "pubsub consume" in line]
    for flag in ("--until", "-K", "'^", "@-1h", "--exec-timeout", "orders invoices"):
        assert any(flag in example for example in examples), flag


def test_stored_position_survives_an_until_stop(ten: Invoker) -> None:
    """A group stopped by --until resumes at the stop, record for record."""
    first = ten("consume", "t", "-g", "g", "-p", "0", "--until", "3")
    assert first.stdout.splitlines() == ["p0-0", "p0-1", "p0-2"]
    with Broker(ten.db_path) as broker:
        assert broker.committed_offsets("g")[TopicPartition("t", 0)] == 3
