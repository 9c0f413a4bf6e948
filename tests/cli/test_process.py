"""The CLI as real processes with real pipes: stdin, stdout, stderr, signals, exit codes."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pubsub import Broker
from pubsub.records import Message
from tests.helpers import PUBSUB, all_records, cli_env, lines, run_cli

pytestmark = pytest.mark.cli

#: Text that must never reach stderr: Python's own reports of an unhandled failure.
PYTHON_NOISE = (b"Traceback", b"Exception ignored", b"BrokenPipe")


def assert_quiet_stderr(stderr: bytes) -> None:
    """stderr carries no traceback or interpreter noise."""
    for noise in PYTHON_NOISE:
        assert noise not in stderr, stderr.decode("utf-8", "replace")


def assert_ok(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 0, result
    assert result.stderr == b"", result.stderr


def create_topic(db_path: Path, name: str, *options: str) -> None:
    result = run_cli(db_path, "topic", "create", name, *options)
    assert result.returncode == 0, result
    assert result.stdout == b""


def values_of(db_path: Path, topic: str) -> dict[int, list[tuple[int, bytes | None]]]:
    with Broker(db_path) as broker:
        return all_records(broker, topic)


def fetch_all(db_path: Path, topic: str) -> dict[int, list[tuple[Any, ...]]]:
    """Per partition: (offset, timestamp, key, value, headers) of every record."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    with Broker(db_path) as broker:
        for partition, (start, end) in broker.watermarks(topic).items():
            records = broker.fetch(topic, partition, start, max_records=100_000) if end else []
            out[partition] = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records]
    return out


def json_records(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(stdout)]


def wait_for_offset(db_path: Path, topic: str, partition: int, target: int) -> int:
    """Poll the database (up to 10 s) until the partition's next offset reaches ``target``."""
    deadline = time.monotonic() + 10
    with Broker(db_path) as broker:
        while True:
            latest = broker.latest_offset(topic, partition)
            if latest >= target or time.monotonic() > deadline:
                return latest
            time.sleep(0.01)  # the pause between looks of a wait with a deadline


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read from ``fd`` until ``needle`` has arrived, EOF, or ``timeout`` seconds passed."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def _default_sigint() -> None:
    # A child inherits an ignored SIGINT (e.g. from a background job); Ctrl-C tests need the
    # default disposition so that Python installs its KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def pubsub_process(db_path: Path, *args: str, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``pubsub ARGS`` as a running process with pipes; killed if the test leaves it running."""
    proc = subprocess.Popen(
        [PUBSUB, *args],
        stdin=kwargs.pop("stdin", subprocess.PIPE),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db_path),
        bufsize=0,
        preexec_fn=_default_sigint,  # noqa: PLW1509 (the test process runs no threads)
        **kwargs,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- produce from stdin ---------------------------------------------------------------------


def test_stdin_lines_round_trip_byte_for_byte(db_path: Path) -> None:
    create_topic(db_path, "t")
    values = [b"first", b"", b"\xff\xfe\x00x", b"caf\xc3\xa9", b"  padded\tvalue ", b"last"]
    data = b"\n".join(values)  # the final line has no newline
    assert not data.endswith(b"\n")

    produced = run_cli(db_path, "produce", "t", input=data)
    assert_ok(produced)
    assert produced.stdout == b""

    stored = values_of(db_path, "t")
    assert stored == {0: list(enumerate(values))}  # the empty line is b"", not null

    consumed = run_cli(db_path, "consume", "t")
    assert_ok(consumed)
    assert consumed.stdout == data + b"\n"


def test_stdin_empty_input_writes_nothing(db_path: Path) -> None:
    create_topic(db_path, "t")
    result = run_cli(db_path, "produce", "t", input=b"")
    assert_ok(result)
    assert result.stdout == b""
    assert values_of(db_path, "t") == {0: []}


def test_null_delimited_produce_and_consume(db_path: Path) -> None:
    create_topic(db_path, "t")
    values = [b"one", b"two\nlines", b"", b"\xff\x80", b"tail"]
    data = b"\0".join(values) + b"\0"

    produced = run_cli(db_path, "produce", "t", "-0", input=data)
    assert_ok(produced)
    assert values_of(db_path, "t") == {0: list(enumerate(values))}

    consumed = run_cli(db_path, "consume", "t", "-0")
    assert_ok(consumed)
    assert consumed.stdout == data

    # Without -0 the same records end with newlines instead.
    consumed = run_cli(db_path, "consume", "t")
    assert_ok(consumed)
    assert consumed.stdout == b"\n".join(values) + b"\n"


def test_key_separator_splits_key_and_value(db_path: Path) -> None:
    create_topic(db_path, "t")
    data = b"k1:v1\nnokey\nk2:v:with:colons\n:empty-key\nk3:\n"
    produced = run_cli(db_path, "produce", "t", "-K", ":", input=data)
    assert_ok(produced)

    consumed = run_cli(db_path, "consume", "t", "--format", "json")
    assert_ok(consumed)
    got = [(r["key"], r["value"]) for r in json_records(consumed.stdout)]
    assert got == [
        ("k1", "v1"),
        (None, "nokey"),
        ("k2", "v:with:colons"),
        ("", "empty-key"),
        ("k3", ""),
    ]


def test_key_separator_escape_tab(db_path: Path) -> None:
    create_topic(db_path, "t")
    produced = run_cli(db_path, "produce", "t", "-K", "\\t", input=b"a\tb\tc\nplain\n")
    assert_ok(produced)
    consumed = run_cli(db_path, "consume", "t", "--format", "%K:%k|%s\\n")
    assert_ok(consumed)
    assert consumed.stdout == b"1:a|b\tc\n-1:|plain\n"


def test_headers_visible_in_json(db_path: Path) -> None:
    create_topic(db_path, "t")
    headers = ["-H", "source=cli", "-H", "empty=", "-H", "dup=1", "-H", "dup=2", "-H", "eq=a=b"]
    produced = run_cli(db_path, "produce", "t", *headers, input=b"x\ny\n")
    assert_ok(produced)
    produced = run_cli(db_path, "produce", "t", *headers, "z")  # values as arguments
    assert_ok(produced)

    consumed = run_cli(db_path, "consume", "t", "--format", "json")
    assert_ok(consumed)
    expected_headers = [["source", "cli"], ["empty", ""], ["dup", "1"], ["dup", "2"], ["eq", "a=b"]]
    records = json_records(consumed.stdout)
    assert [r["value"] for r in records] == ["x", "y", "z"]
    assert [r["key"] for r in records] == [None, None, None]
    assert [r["headers"] for r in records] == [expected_headers] * 3


def test_headers_with_key_separator(db_path: Path) -> None:
    create_topic(db_path, "t")
    produced = run_cli(db_path, "produce", "t", "-K", ":", "-H", "h=1", input=b"k:v\nnokey\n")
    assert_ok(produced)
    consumed = run_cli(db_path, "consume", "t", "--format", "json")
    assert_ok(consumed)
    got = [(r["key"], r["value"], r["headers"]) for r in json_records(consumed.stdout)]
    assert got == [("k", "v", [["h", "1"]]), (None, "nokey", [["h", "1"]])]


def test_print_offsets(db_path: Path) -> None:
    create_topic(db_path, "t")
    assert_ok(run_cli(db_path, "produce", "t", "old1", "old2"))

    produced = run_cli(db_path, "produce", "t", "--print-offsets", input=b"a\nb\nc\n")
    assert produced.returncode == 0, produced
    assert produced.stderr == b""
    assert produced.stdout == b"0\t2\n0\t3\n0\t4\n"


def test_print_offsets_match_where_records_went(db_path: Path) -> None:
    create_topic(db_path, "t", "--partitions", "3")
    keys = [f"key-{i}".encode() for i in range(12)]
    data = b"".join(k + b":" + b"value-" + k + b"\n" for k in keys)

    produced = run_cli(db_path, "produce", "t", "-K", ":", "--print-offsets", input=data)
    assert produced.returncode == 0, produced
    assert produced.stderr == b""
    printed = [tuple(map(int, line.split(b"\t"))) for line in lines(produced.stdout)]
    assert len(printed) == len(keys)

    where = {
        value: (partition, offset)
        for partition, recs in values_of(db_path, "t").items()
        for offset, value in recs
    }
    assert printed == [where[b"value-" + k] for k in keys]  # input order


# -- pipes ----------------------------------------------------------------------------------


def test_consume_into_head_ends_quietly(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        # ~500 KB: far more than a pipe buffer, so pubsub certainly writes into a closed pipe.
        broker.produce_batch("t", [b"%05d" % i + b"." * 95 for i in range(5000)])
    err_file = tmp_path / "pubsub.stderr"
    script = (
        'set -o pipefail; "$PUBSUB" consume t 2>"$ERR_FILE" | head -n 1; '
        'echo "pubsub-status=${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        timeout=60,
        env=cli_env(db_path, PUBSUB=PUBSUB, ERR_FILE=str(err_file)),
        check=False,
    )
    assert result.stdout == b"00000" + b"." * 95 + b"\n"  # head printed exactly one line
    pubsub_stderr = err_file.read_bytes()
    assert_quiet_stderr(pubsub_stderr)
    assert pubsub_stderr == b""
    assert result.stderr == b"pubsub-status=0\n"


def test_slow_pipe_commits_before_eof(db_path: Path) -> None:
    create_topic(db_path, "t")
    with pubsub_process(db_path, "produce", "t") as proc:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(b"first\n")
        proc.stdin.flush()

        assert wait_for_offset(db_path, "t", 0, 1) == 1
        assert proc.poll() is None  # committed while stdin is still open
        assert values_of(db_path, "t") == {0: [(0, b"first")]}

        proc.stdin.write(b"second\nthird\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        stderr = proc.stderr.read()
    assert stderr == b""
    assert values_of(db_path, "t") == {0: [(0, b"first"), (1, b"second"), (2, b"third")]}


def test_ctrl_c_keeps_committed_records(db_path: Path) -> None:
    create_topic(db_path, "t")
    with pubsub_process(db_path, "produce", "t") as proc:
        assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
        proc.stdin.write(b"one\ntwo\nthree\n")
        proc.stdin.flush()
        assert wait_for_offset(db_path, "t", 0, 3) == 3
        assert proc.poll() is None

        proc.stdin.write(b"unterminated")  # not a record: Ctrl-C came before its newline
        proc.stdin.flush()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        stdout = proc.stdout.read()
        stderr = proc.stderr.read()
    assert stdout == b""
    assert_quiet_stderr(stderr)
    assert b"KeyboardInterrupt" not in stderr
    assert values_of(db_path, "t") == {0: [(0, b"one"), (1, b"two"), (2, b"three")]}


# -- a bad record in the middle -------------------------------------------------------------


def test_bad_raw_record_keeps_those_before_it(db_path: Path) -> None:
    create_topic(db_path, "small", "--max-message-bytes", "20")
    data = b"one\ntwo\nthree\n" + b"x" * 50 + b"\nfive\nsix\n"

    result = run_cli(db_path, "produce", "small", input=data)
    assert result.returncode == 2, result
    assert result.stdout == b""
    assert result.stderr.startswith(b"error:"), result.stderr
    assert_quiet_stderr(result.stderr)
    text = result.stderr.decode()
    assert "line 4" in text
    assert "3 records before it were committed" in text
    assert values_of(db_path, "small") == {0: [(0, b"one"), (1, b"two"), (2, b"three")]}


def _envelope(value: str) -> bytes:
    return json.dumps({"value": value}).encode()


@pytest.mark.parametrize(
    ("input_lines", "bad_line", "kept"),
    [
        pytest.param(
            [_envelope("a"), _envelope("b"), _envelope("c"), b'{"value": "d"', _envelope("e")],
            4,
            [b"a", b"b", b"c"],
            id="invalid-json",
        ),
        pytest.param(
            [_envelope("a"), b"", _envelope("b"), b"[1, 2]", _envelope("e"), _envelope("f")],
            4,
            [b"a", b"b"],
            id="blank-line-then-non-object",
        ),
        pytest.param(
            [_envelope("a"), _envelope("b"), _envelope("c"), _envelope("x" * 50), _envelope("e")],
            4,
            [b"a", b"b", b"c"],
            id="too-large",
        ),
    ],
)
def test_bad_json_record_keeps_those_before_it(
    db_path: Path, input_lines: list[bytes], bad_line: int, kept: list[bytes]
) -> None:
    create_topic(db_path, "t", "--max-message-bytes", "20")
    result = run_cli(db_path, "produce", "t", "--format", "json", input=b"\n".join(input_lines))
    assert result.returncode == 2, result
    assert result.stdout == b""
    assert result.stderr.startswith(b"error:"), result.stderr
    assert_quiet_stderr(result.stderr)
    text = result.stderr.decode()
    assert f"line {bad_line}:" in text
    assert f"{len(kept)} records before it were committed" in text
    assert values_of(db_path, "t") == {0: list(enumerate(kept))}


# -- consume --follow -----------------------------------------------------------------------


def test_follow_with_timeout_exits_after_idle(db_path: Path) -> None:
    create_topic(db_path, "t")
    assert_ok(run_cli(db_path, "produce", "t", "a", "b"))
    started = time.monotonic()
    result = run_cli(db_path, "consume", "t", "--follow", "--timeout", "1", timeout=30)
    assert result.returncode == 0, result
    assert result.stdout == b"a\nb\n"
    assert result.stderr == b""
    assert time.monotonic() - started >= 1.0  # it did wait for the idle period


def test_follow_prints_records_from_another_process(db_path: Path) -> None:
    create_topic(db_path, "t")
    assert_ok(run_cli(db_path, "produce", "t", "before"))
    with pubsub_process(db_path, "consume", "t", "-f", stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        assert read_until(fd, b"\n") == b"before\n"  # it is running and at the end of the log

        assert_ok(run_cli(db_path, "produce", "t", "after", "again"))
        assert read_until(fd, b"again\n") == b"after\nagain\n"
        assert proc.poll() is None  # still following
        proc.terminate()  # SIGTERM ends a follower cleanly, like Ctrl-C
        assert proc.wait(timeout=10) == 130
        assert proc.stderr.read() == b""


# -- consumer groups ------------------------------------------------------------------------


def test_group_commits_what_it_printed(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", 2)
        broker.produce_batch("t", [Message(f"v{i}", partition=i % 2) for i in range(12)])

    def consume(*extra: str) -> list[tuple[int, int, bytes]]:
        result = run_cli(db_path, "consume", "t", "-g", "grp", "--format", "%p %o %s\\n", *extra)
        assert_ok(result)
        out = []
        for line in lines(result.stdout):
            p, o, v = line.split(b" ")
            out.append((int(p), int(o), v))
        return out

    first = consume("-n", "5")
    assert len(first) == 5
    with Broker(db_path) as broker:
        committed = broker.committed_offsets("grp")
    assert sum(committed.values()) == 5
    # The committed offsets cover exactly the records printed.
    assert {(p, o) for p, o, _ in first} == {
        (tp.partition, o) for tp, end in committed.items() for o in range(end)
    }

    rest = consume()
    assert len(rest) == 7
    everything = first + rest
    assert sorted(everything) == sorted((i % 2, i // 2, f"v{i}".encode()) for i in range(12))
    assert consume() == []  # nothing is delivered twice
    with Broker(db_path) as broker:
        assert sorted(broker.committed_offsets("grp").values()) == [6, 6]


# -- files that are not (usable) databases --------------------------------------------------


def test_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    content = (b"not a database" * 300)[:4096]
    bogus.write_bytes(content)
    for command in (["topic", "list"], ["produce", "t", "v"], ["consume", "t"]):
        result = run_cli(bogus, "--db", str(bogus), *command)
        assert result.returncode == 6, (command, result)
        assert result.stdout == b""
        assert result.stderr.startswith(b"error:"), result.stderr
        assert_quiet_stderr(result.stderr)
    assert bogus.read_bytes() == content  # the file was left alone


def test_database_from_a_newer_version(db_path: Path) -> None:
    create_topic(db_path, "t")
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA user_version = 999")
    finally:
        conn.close()
    for command in (["topic", "list"], ["produce", "t", "v"]):
        result = run_cli(db_path, "--db", str(db_path), *command)
        assert result.returncode == 6, (command, result)
        assert result.stdout == b""
        assert result.stderr.startswith(b"error:"), result.stderr
        assert_quiet_stderr(result.stderr)


# -- locking --------------------------------------------------------------------------------


def test_busy_database(db_path: Path) -> None:
    create_topic(db_path, "t")
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        result = run_cli(db_path, "--busy-timeout", "0.3", "produce", "t", "v")
        assert result.returncode == 5, result
        assert result.stdout == b""
        assert result.stderr.startswith(b"error:"), result.stderr
        assert_quiet_stderr(result.stderr)
        conn.execute("ROLLBACK")

        result = run_cli(db_path, "--busy-timeout", "0.3", "produce", "t", "v")
        assert_ok(result)
    finally:
        conn.close()
    assert values_of(db_path, "t") == {0: [(0, b"v")]}


# -- topic delete ---------------------------------------------------------------------------


def test_topic_delete_needs_yes_without_a_terminal(db_path: Path) -> None:
    create_topic(db_path, "t")
    # stdin is a pipe (not a terminal), even one that says "y".
    result = run_cli(db_path, "topic", "delete", "t", input=b"y\n")
    assert result.returncode != 0, result
    assert result.stdout == b""
    assert result.stderr.startswith(b"error:"), result.stderr
    assert b"--yes" in result.stderr
    assert_quiet_stderr(result.stderr)
    with Broker(db_path) as broker:
        assert [t.name for t in broker.list_topics()] == ["t"]

    result = run_cli(db_path, "topic", "delete", "t", "--yes", input=b"")
    assert result.returncode == 0, result
    assert result.stdout == b""
    with Broker(db_path) as broker:
        assert broker.list_topics() == []


# -- copying a topic through a pipe ---------------------------------------------------------


def test_json_pipe_copies_a_topic_exactly(db_path: Path) -> None:
    base = 1_700_000_000_000
    messages = [
        Message(b"keyed", key=b"k-a", headers=[("h", b"1"), ("nil", None)], timestamp=base),
        Message(b"\xff\x00\x80bin", key=b"\xfe\xff", headers=[("bin", b"\x80\x81")], timestamp=5),
        Message(None, key=b"k-b", timestamp=base + 10),  # a tombstone
        Message(b"", key=b"", headers=[("dup", b"x"), ("dup", b"y")], timestamp=base - 7),
        Message("caf\u00e9 \u6f22\u5b57\nline2", partition=2, timestamp=base + 1),
        Message(b"keyless-p0", partition=0, headers=[("empty", b"")], timestamp=0),
    ]
    messages += [
        Message(
            f"v{i}".encode(), key=f"key-{i % 5}".encode() if i % 3 else None, timestamp=base + i
        )
        for i in range(30)
    ]
    with Broker(db_path) as broker:
        broker.create_topic("src", 3)
        for message in messages:  # one by one, so keyless records spread round-robin
            broker.produce_batch("src", [message])
        broker.create_topic("dst", 3)
    source = fetch_all(db_path, "src")
    assert all(source[p] for p in range(3))

    script = "set -o pipefail; pubsub consume src --format json | pubsub produce dst --format json"
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, timeout=60, env=cli_env(db_path), check=False
    )
    assert result.returncode == 0, result
    assert result.stdout == b""
    assert result.stderr == b""
    assert fetch_all(db_path, "dst") == source


# -- output bytes -----------------------------------------------------------------------------


def _polled(db_path: Path, batch: int, limit: int | None) -> list[Any]:
    """The records ``consume`` writes: polls of ``--batch`` (fewer for the last of ``-n``)."""
    from pubsub import Consumer
    from pubsub.records import Record

    records: list[Record] = []
    with Consumer(db_path, "src", max_poll_records=batch, auto_commit=False) as consumer:
        consumer.stop_at_end()
        while limit is None or len(records) < limit:
            want = batch if limit is None else min(batch, limit - len(records))
            polled = consumer.poll(max_records=want)
            if not polled:
                break
            records.extend(polled)
    return records


def _as_raw(records: list[Any], terminator: bytes) -> bytes:
    return b"".join((r.value if r.value is not None else b"") + terminator for r in records)


def _as_json(records: list[Any], terminator: bytes) -> bytes:
    from pubsub.envelope import record_to_json

    return b"".join(record_to_json(r).encode("utf-8") + terminator for r in records)


@pytest.mark.parametrize(
    ("options", "batch", "limit", "env"),
    [
        ([], 2000, None, {}),
        (["--batch", "3"], 3, None, {}),
        (["-o", "0", "-n", "20", "--batch", "3"], 3, 20, {}),
        (["-o", "0", "-n", "41"], 2000, 41, {}),
        ([], 2000, None, {"PYTHONUNBUFFERED": "1"}),
        (["--batch", "4", "-g", "g"], 4, None, {"PYTHONUNBUFFERED": "1"}),
    ],
)
@pytest.mark.parametrize("output", ["raw", "raw0", "json", "json0"])
def test_consume_writes_the_records_bytes_exactly(
    db_path: Path,
    options: list[str],
    batch: int,
    limit: int | None,
    env: dict[str, str],
    output: str,
) -> None:
    """Raw and JSON output are the values and envelopes of the records a poll returns, byte
    for byte, whatever the batch, -n, -0, a group or PYTHONUNBUFFERED."""
    base = 1_700_000_000_000
    messages = [
        Message(b"keyed", key=b"k-a", headers=[("h", b"1"), ("nil", None)], timestamp=base),
        Message(b"\xff\x00\x80bin\n", key=b"\xfe\xff", headers=[("bin", b"\x80\x81")], timestamp=5),
        Message(None, key=b"k-b", timestamp=base + 10),
        Message(b"", key=b"", headers=[("dup", b"x"), ("dup", b"y")], timestamp=base - 7),
        Message('caf\u00e9 "\u6f22" \\ \t\x01\x7f', partition=2, timestamp=base + 1),
        Message("\U0001f600".encode(), partition=0, headers=[("empty", b"")], timestamp=0),
    ]
    messages += [Message(f"v{i}".encode(), key=b"k" if i % 3 else None) for i in range(40)]
    with Broker(db_path) as broker:
        broker.create_topic("src", 3)
        for message in messages:  # one by one, so keyless records spread round-robin
            broker.produce_batch("src", [message])
    terminator = b"\0" if output.endswith("0") else b"\n"
    fmt = output.rstrip("0")
    records = _polled(db_path, batch, limit)
    assert len({r.partition for r in records}) == 3
    expected = (_as_raw if fmt == "raw" else _as_json)(records, terminator)

    argv = ["consume", "src", "--format", fmt, *options, *(["-0"] if output.endswith("0") else [])]
    result = run_cli(db_path, *argv, env=cli_env(db_path, **env))
    assert_ok(result)
    assert result.stdout == expected
    if "-g" in options:
        with Broker(db_path) as broker:
            ends = {("src", p): end for p, (_start, end) in broker.watermarks("src").items()}
            assert broker.committed_offsets("g", "src") == ends
