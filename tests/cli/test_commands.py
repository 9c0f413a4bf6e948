"""The CLI in-process (CliRunner): commands, options, output shapes and exit codes."""

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.schema import SCHEMA_VERSION
from tests.helpers import PUBSUB, Invoker, Terminal, cli_env

pytestmark = pytest.mark.cli


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# -- topics ----------------------------------------------------------------------------------


def test_topic_lifecycle(cli: Invoker) -> None:
    r = cli(
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--retention",
        "7d",
        "--retention-bytes",
        "1GiB",
        "--max-message-bytes",
        "2MiB",
        "--config",
        "cleanup.policy=compact",
    )
    assert r.exit_code == 0, r
    assert r.stdout == ""  # messages go to stderr
    assert "orders" in r.stderr
    [topic] = jsonl(cli("topic", "list").stdout)
    assert topic["name"] == "orders" and topic["partitions"] == 3
    config = topic["config"]
    assert isinstance(config, dict)
    assert config["retention.ms"] == str(7 * 86_400_000)
    assert config["retention.bytes"] == str(1 << 30)
    assert config["max.message.bytes"] == str(2 << 20)
    assert config["cleanup.policy"] == "compact"

    assert cli("topic", "alter", "orders", "--partitions", "5", "--retention", "-1").exit_code == 0
    [described] = jsonl(cli("topic", "describe", "orders").stdout)
    assert described["partitions"] == 5
    parts = described["partition_info"]
    assert isinstance(parts, list) and [p["partition"] for p in parts] == [0, 1, 2, 3, 4]
    assert set(parts[0]) == {
        "partition",
        "log_start_offset",
        "next_offset",
        "records",
        "bytes",
        "max_timestamp",
    }

    assert cli("topic", "delete", "orders", "--yes").exit_code == 0
    assert cli("topic", "list").stdout == ""
    r = cli("topic", "delete", "orders", "--yes")
    assert r.exit_code == 3 and r.stderr.startswith("error:")
    assert cli("topic", "delete", "orders", "--yes", "--if-exists").exit_code == 0


def test_create_twice(cli: Invoker) -> None:
    assert cli("topic", "create", "t").exit_code == 0
    r = cli("topic", "create", "t")
    assert r.exit_code == 4
    assert "already exists" in r.stderr and "hint: " in r.stderr
    assert cli("topic", "create", "t", "--if-not-exists").exit_code == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["topic", "create", "a/b"], "invalid topic name"),
        (["topic", "create", ".."], "invalid topic name"),
        (["topic", "create", "x" * 250], "invalid topic name"),
        (["topic", "create", "t", "--partitions", "0"], "0"),
        (["topic", "create", "t", "--partitions", "100000"], "partition count"),
        (["topic", "create", "t", "--retention", "7 days"], "invalid duration"),
        (["topic", "create", "t", "--retention-bytes", "lots"], "invalid size"),
        (["topic", "create", "t", "--max-message-bytes", "0"], "max.message.bytes"),
        (["topic", "create", "t", "--config", "nope=1"], "unknown topic config"),
        (["topic", "create", "t", "--config", "retention.ms"], "KEY=VALUE"),
    ],
)
def test_bad_topic_input_writes_nothing(cli: Invoker, args: list[str], fragment: str) -> None:
    r = cli(*args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("error:") and fragment in r.stderr
    assert r.stdout == ""
    if cli.db_path.exists():
        with Broker(cli.db_path) as broker:
            assert broker.list_topics() == []


def test_alter_needs_something_to_change(cli: Invoker) -> None:
    cli("topic", "create", "t", "-P", "2")
    r = cli("topic", "alter", "t")
    assert r.exit_code == 2 and "nothing to change" in r.stderr
    r = cli("topic", "alter", "t", "--partitions", "1")
    assert r.exit_code == 2 and "can only grow" in r.stderr


# -- produce ---------------------------------------------------------------------------------


def test_produce_values_and_keys(cli: Invoker) -> None:
    cli("topic", "create", "t", "-P", "4")
    r = cli("produce", "t", "a", "b", "-k", "user-1", "-H", "source=cli", "--print-offsets")
    assert r.exit_code == 0, r
    offsets = [line.split("\t") for line in r.stdout.splitlines()]
    assert len({p for p, _ in offsets}) == 1 and [o for _, o in offsets] == ["0", "1"]
    records = jsonl(cli("consume", "t", "--format", "json").stdout)
    assert [(x["key"], x["value"], x["headers"]) for x in records] == [
        ("user-1", "a", [["source", "cli"]]),
        ("user-1", "b", [["source", "cli"]]),
    ]


def test_produce_empty_values_as_null(cli: Invoker) -> None:
    """-Z (kcat's): an empty value is sent as null, a tombstone; with -K an empty key too."""
    cli("topic", "create", "z")

    def records() -> list[tuple[bytes | None, bytes | None]]:
        with Broker(cli.db_path) as broker:
            return [(r.key, r.value) for r in broker.fetch("z", 0, 0, max_records=100)]

    r = cli("produce", "z", "-K", ":", "-Z", input=b"k1:\nk2:v\n:v3\n\nplain\n")
    assert r.exit_code == 0, r
    assert records() == [
        (b"k1", None),
        (b"k2", b"v"),
        (None, b"v3"),
        (None, None),
        (None, b"plain"),
    ]
    assert cli("produce", "z", "-Z", "-k", "k", "", "x").exit_code == 0
    assert cli("produce", "z", "-Z", input=b"\ny\n").exit_code == 0
    assert cli("produce", "z", "", input=b"").exit_code == 0  # without -Z: an empty value
    assert records()[5:] == [(b"k", None), (b"k", b"x"), (None, None), (None, b"y"), (None, b"")]
    bad = cli("produce", "z", "-Z", "--format", "json", input=b'{"value": null}\n')
    assert bad.exit_code == 2 and "-Z" in bad.stderr


def test_produce_needs_the_topic(cli: Invoker) -> None:
    cli("topic", "create", "other")
    r = cli("produce", "missing", "x")
    assert r.exit_code == 3
    assert "error: topic 'missing' does not exist" in r.stderr and "--create" in r.stderr
    r = cli("produce", "missing", "x", "--create")
    assert r.exit_code == 0
    assert cli("consume", "missing").stdout == "x\n"


def test_produce_without_database_creates_nothing(cli: Invoker) -> None:
    r = cli("produce", "t", "x")
    assert r.exit_code == 3 and "does not exist" in r.stderr
    assert not cli.db_path.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-p", "7"], "partition 7 does not exist"),
        (["-H", "novalue"], "invalid header"),
        (["-k", "k", "-K", ":"], "-K"),
        (["--format", "json", "-k", "k"], "--format json"),
        (["--format", "yaml"], "yaml"),
    ],
)
def test_produce_bad_options(cli: Invoker, args: list[str], fragment: str) -> None:
    cli("topic", "create", "t")
    r = cli("produce", "t", "value", *args)
    assert r.exit_code == 2, r
    assert fragment in r.stderr
    with Broker(cli.db_path) as broker:
        assert broker.latest_offset("t", 0) == 0


def test_produce_stdin_in_process(cli: Invoker) -> None:
    cli("topic", "create", "t")
    r = cli("produce", "t", input=b"one\ntwo\n\nlast")
    assert r.exit_code == 0, r
    assert cli("consume", "t").stdout_bytes == b"one\ntwo\n\nlast\n"


def test_produce_stdin_key_separator(cli: Invoker) -> None:
    cli("topic", "create", "t")
    assert cli("produce", "t", "-K", "\\t", input=b"k1\tv1\nno-key\n").exit_code == 0
    out = cli("consume", "t", "--format", "%K:%k|%s\\n").stdout
    assert out == "2:k1|v1\n-1:|no-key\n"


def test_bad_record_names_the_line(cli: Invoker) -> None:
    cli("topic", "create", "t", "--max-message-bytes", "5")
    r = cli("produce", "t", input=b"a\nbb\ntoo long\ncc\n")
    assert r.exit_code == 2
    assert "line 3" in r.stderr and "2 records before it were committed" in r.stderr
    assert cli("consume", "t").stdout == "a\nbb\n"


def test_bad_json_line(cli: Invoker) -> None:
    cli("topic", "create", "t")
    good = json.dumps({"value": "ok"})
    r = cli("produce", "t", "--format", "json", input=f"{good}\n\n{good}\n{{oops\n{good}\n")
    assert r.exit_code == 2
    assert "line 4" in r.stderr and "invalid JSON" in r.stderr and "2 records before" in r.stderr
    assert cli("consume", "t").stdout == "ok\nok\n"


# -- consume ---------------------------------------------------------------------------------


@pytest.fixture
def filled(cli: Invoker) -> Invoker:
    with Broker(cli.db_path, clock=lambda: 1_700_000_000_000) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce_batch("t", [f"p0-{i}".encode() for i in range(5)], partition=0)
    with Broker(cli.db_path, clock=lambda: 1_700_000_100_000) as broker:
        broker.produce_batch("t", [f"p1-{i}".encode() for i in range(5)], partition=1)
    return cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], [f"p0-{i}" for i in range(5)] + [f"p1-{i}" for i in range(5)]),
        (["-o", "beginning", "-p", "1"], [f"p1-{i}" for i in range(5)]),
        (["-o", "end"], []),
        (["-o", "3"], ["p0-3", "p0-4", "p1-3", "p1-4"]),
        (["-o", "-1"], ["p0-4", "p1-4"]),
        (["-o", "-99", "-p", "0", "-n", "2"], ["p0-0", "p0-1"]),
        (["-o", "@1700000050000"], [f"p1-{i}" for i in range(5)]),
        (["-o", "@2023-11-14T22:14:10Z"], [f"p1-{i}" for i in range(5)]),
    ],
)
def test_offset_specs(filled: Invoker, args: list[str], expected: list[str]) -> None:
    r = filled("consume", "t", *args)
    assert r.exit_code == 0, r
    assert sorted(r.stdout.splitlines()) == sorted(expected)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-o", "sometime"], "invalid offset"),
        (["-o", "@yesterday"], "invalid time"),
        (["-o", "stored"], "needs a group"),
        (["--format", "%q"], "unknown format token"),
        (["--format", "xml"], "unknown format"),
        (["-p", "9"], "no partition 9"),
        (["-n", "0"], "0"),
        (["--group", "bad group"], "invalid group name"),
    ],
)
def test_consume_bad_input(filled: Invoker, args: list[str], fragment: str) -> None:
    r = filled("consume", "t", *args)
    assert r.exit_code == 2, r
    assert fragment in r.stderr and r.stdout == ""


def test_max_messages_takes_fair_prefixes(filled: Invoker) -> None:
    out = filled("consume", "t", "-n", "3", "-p", "0", "-p", "1").stdout.splitlines()
    assert len(out) == 3
    for p in ("p0", "p1"):
        mine = [line for line in out if line.startswith(p)]
        assert mine == [f"{p}-{i}" for i in range(len(mine))]


def test_templates(filled: Invoker) -> None:
    r = filled("consume", "t", "-p", "0", "-n", "1", "--format", "%t|%p|%o|%T|%S|%k|%K|%h|%%\\n")
    assert r.stdout == "t|0|0|1700000000000|4||-1||%\n"
    r = filled("consume", "t", "-p", "0", "-n", "2", "-0", "--format", "%s")
    assert r.stdout_bytes == b"p0-0\0p0-1\0"
    r = filled("consume", "t", "-p", "0", "-n", "2", "-0")
    assert r.stdout_bytes == b"p0-0\0p0-1\0"


def test_group_consume_commits_after_output(filled: Invoker) -> None:
    first = filled("consume", "t", "--group", "g", "-n", "4", "--batch", "3")
    assert first.exit_code == 0 and len(first.stdout.splitlines()) == 4
    with Broker(filled.db_path) as broker:
        assert sum(broker.committed_offsets("g").values()) == 4
    rest = filled("consume", "t", "-g", "g")
    assert sorted(first.stdout.splitlines() + rest.stdout.splitlines()) == sorted(
        [f"p{p}-{i}" for p in range(2) for i in range(5)]
    )
    assert filled("consume", "t", "-g", "g").stdout == ""
    again = filled("consume", "t", "-g", "g", "-o", "beginning", "-p", "1")
    assert again.stdout.splitlines() == [f"p1-{i}" for i in range(5)]


def test_new_group_can_start_at_latest(filled: Invoker) -> None:
    assert filled("consume", "t", "-g", "fresh", "--reset", "latest").stdout == ""
    filled("produce", "t", "new", "-p", "0")
    assert filled("consume", "t", "-g", "fresh").stdout == "new\n"


# -- db and global options -------------------------------------------------------------------


def test_db_info(cli: Invoker) -> None:
    r = cli("db", "info")
    assert r.exit_code == 3 and not cli.db_path.exists()
    cli("topic", "create", "t")
    [info] = jsonl(cli("db", "info").stdout)
    assert info["schema_version"] == SCHEMA_VERSION and info["synchronous"] == "full"
    assert info["journal_mode"] == "wal" and info["topics"] == 1
    assert info["path"] == str(cli.db_path)
    r = cli.runner.invoke(
        __import__("pubsub.commands.app", fromlist=["make_app"]).make_app(),
        ["--db", str(cli.db_path), "--sync", "normal", "db", "info", "--json"],
    )
    assert json.loads(r.stdout)["synchronous"] == "normal"


def test_environment_variables(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    env = cli_env(None, PUBSUB_DB=str(db), PUBSUB_SYNC="normal")
    subprocess.run([PUBSUB, "topic", "create", "t"], env=env, check=True, capture_output=True)
    out = subprocess.run([PUBSUB, "db", "info"], env=env, check=True, capture_output=True)
    info = json.loads(out.stdout)
    assert info["path"] == str(db) and info["synchronous"] == "normal"


def test_usage_errors(cli: Invoker) -> None:
    r = cli("bogus")
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "hint:" in r.stderr
    r = cli("produce")
    assert r.exit_code == 2 and "Missing argument 'topic'" in r.stderr
    assert "hint: see 'pubsub produce --help'" in r.stderr
    r = cli("--sync", "off", "db", "info")
    assert r.exit_code == 2
    r = cli("topic")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == "error: Missing command.\nhint: see 'pubsub topic --help'\n"


def test_version_and_help(cli: Invoker) -> None:
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("pubsub ")
    for args in (
        ["--help"],
        ["produce", "--help"],
        ["consume", "-h"],
        ["topic", "create", "--help"],
    ):
        r = cli(*args)
        assert r.exit_code == 0 and "Usage" in r.stdout, args
        assert "Example" in r.stdout or args == ["--help"], args


def test_tables_on_a_terminal(tmp_path: Path) -> None:
    db = tmp_path / "tty.db"
    env = cli_env(db, NO_COLOR="1", COLUMNS="120")
    subprocess.run([PUBSUB, "topic", "create", "orders", "-P", "2"], env=env, check=True)
    for args, header in (
        (["topic", "list"], "partitions"),
        (["topic", "describe", "orders"], "next offset"),
        (["db", "info"], "schema version"),
    ):
        primary, replica = pty.openpty()
        proc = subprocess.run(
            [PUBSUB, *args],
            env=env,
            stdout=replica,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
        )
        os.close(replica)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(primary)
        text = output.decode()
        assert proc.returncode == 0, proc.stderr
        assert header in text and "{" not in text, text
        assert "\x1b[" not in text  # NO_COLOR


def test_topic_list_shows_the_retention_that_applies(tmp_path: Path) -> None:
    db = tmp_path / "tty.db"
    env = cli_env(db, NO_COLOR="1", COLUMNS="200")
    for name, config in (
        ("a-plain", []),
        ("b-time", ["retention.ms=7d"]),
        ("c-bytes", ["retention.bytes=1GiB"]),
        ("d-count", ["retention.messages=500"]),
        ("e-consumed", ["retention.consumed=true"]),
        ("f-compact", ["cleanup.policy=compact", "retention.ms=1d"]),  # no delete: ms not applied
        ("g-both", ["cleanup.policy=compact,delete", "retention.ms=12h", "retention.messages=1"]),
    ):
        args = [arg for pair in config for arg in ("--config", pair)]
        subprocess.run([PUBSUB, "topic", "create", name, *args], env=env, check=True)
    term = Terminal([PUBSUB, "topic", "list"], env, cols=200)
    assert term.finish() == 0
    prefixes = {f"{c}-" for c in "abcdefg"}
    rows = {line.split()[0]: line for line in term.text.splitlines() if line[2:4] in prefixes}
    expected = {
        "a-plain": "forever",
        "b-time": "7d",
        "c-bytes": "1.0 GiB/partition",
        "d-count": "500 records/partition",
        "e-consumed": "consumed",
        "f-compact": "compact",
        "g-both": "12h, 1 record/partition, compact",
    }
    for name, shown in expected.items():
        assert shown in rows[name], (name, rows[name])
    assert "7d" not in rows["f-compact"] and "1d" not in rows["f-compact"]
    # JSON is unchanged: the stored configuration, nothing rendered.
    piped = subprocess.run(
        [PUBSUB, "topic", "list"], env=env, capture_output=True, check=True
    ).stdout.decode()
    (count,) = [t for t in jsonl(piped) if t["name"] == "d-count"]
    assert count["config"]["retention.messages"] == "500"  # type: ignore[index]
