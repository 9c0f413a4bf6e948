"""``pubsub group``: list, describe, reset-offsets (every strategy), delete, delete-offsets."""

import json
from pathlib import Path

import pytest

from pubsub import Broker, Consumer, Message
from tests.helpers import PUBSUB, Invoker, Terminal, cli_env

pytestmark = pytest.mark.cli

T0 = 1_700_000_000_000


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def grouped(cli: Invoker) -> Invoker:
    """Topic t (2 partitions x 10 records, one per second from T0) and group g at 4 and 6."""
    with Broker(cli.db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.create_topic("other")
        for p in range(2):
            broker.produce_batch(
                "t", [Message(f"{p}-{i}".encode(), timestamp=T0 + i * 1000) for i in range(10)],
                partition=p,
            )  # fmt: skip
        broker.commit_offsets("g", {("t", 0): 4, ("t", 1): 6})
    return cli


def offsets(cli: Invoker) -> dict[tuple[str, int], int]:
    with Broker(cli.db_path) as broker:
        return {(tp.topic, tp.partition): o for tp, o in broker.committed_offsets("g").items()}


def test_list_and_describe(grouped: Invoker) -> None:
    [row] = jsonl(grouped("group", "list").stdout)
    assert row == {
        "name": "g", "state": "empty", "generation": 0, "members": 0, "topics": ["t"], "lag": 10,
    }  # fmt: skip
    [described] = jsonl(grouped("group", "describe", "g").stdout)
    parts = described["partitions"]
    assert isinstance(parts, list)
    assert [
        (p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"]) for p in parts
    ] == [
        (0, 4, 10, 6),
        (1, 6, 10, 4),
    ]
    assert described["members"] == [] and described["live_members"] == 0
    r = grouped("group", "describe", "nope")
    assert r.exit_code == 3 and "does not exist" in r.stderr


def test_describe_shows_live_members_and_owners(grouped: Invoker) -> None:
    consumer = Consumer(grouped.db_path, "t", group="g", session_timeout=30)
    try:
        [described] = jsonl(grouped("group", "describe", "g").stdout)
        [member] = described["members"]  # type: ignore[misc]
        assert member["member_id"] == consumer.member_id and member["live"] is True
        assert member["pid"] and member["host"] and member["topics"] == ["t"]
        assert sorted(map(tuple, member["partitions"])) == [("t", 0), ("t", 1)]
        assert {p["owner"] for p in described["partitions"]} == {consumer.member_id}  # type: ignore[union-attr]
        [row] = jsonl(grouped("group", "list").stdout)
        assert row["state"] == "stable" and row["members"] == 1
    finally:
        consumer.close(commit=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to-earliest"], {0: 0, 1: 0}),
        (["--to-latest"], {0: 10, 1: 10}),
        (["--to-offset", "5"], {0: 5, 1: 5}),
        (["--to-offset", "50"], {0: 10, 1: 10}),  # clamped to the log end
        (["--shift-by", "-3"], {0: 1, 1: 3}),
        (["--shift-by", "-30"], {0: 0, 1: 0}),  # clamped to the log start
        (["--shift-by", "2"], {0: 6, 1: 8}),
        (["--to-datetime", str(T0 + 7000)], {0: 7, 1: 7}),
        (["--to-datetime", "2023-11-14T22:13:22.500Z"], {0: 3, 1: 3}),
        (["--to-current"], {0: 4, 1: 6}),
    ],
)
def test_reset_strategies(grouped: Invoker, args: list[str], expected: dict[int, int]) -> None:
    before = offsets(grouped)
    plan = grouped("group", "reset-offsets", "g", "--topic", "t", *args)
    assert plan.exit_code == 0, plan
    rows = jsonl(plan.stdout)
    assert {r["partition"]: r["new_offset"] for r in rows} == expected
    assert {r["partition"]: r["current_offset"] for r in rows} == {0: 4, 1: 6}
    assert "dry run" in plan.stderr
    assert offsets(grouped) == before  # a dry run changes nothing
    done = grouped("group", "reset-offsets", "g", "--topic", "t", *args, "--execute")
    assert done.exit_code == 0, done
    assert offsets(grouped) == {("t", p): o for p, o in expected.items()}


def test_reset_dry_run_may_be_said_explicitly(grouped: Invoker) -> None:
    """kafka-consumer-groups' --dry-run: the default, accepted when given; not with --execute."""
    before = offsets(grouped)
    plan = grouped("group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--dry-run")
    assert plan.exit_code == 0, plan
    assert {r["partition"]: r["new_offset"] for r in jsonl(plan.stdout)} == {0: 0, 1: 0}
    assert "dry run" in plan.stderr
    assert offsets(grouped) == before
    both = grouped(
        "group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--dry-run", "--execute"
    )
    assert both.exit_code == 2 and both.stdout == ""
    assert "error: --dry-run and --execute" in both.stderr and "hint: " in both.stderr
    assert offsets(grouped) == before


def test_reset_by_duration(grouped: Invoker) -> None:
    with Broker(grouped.db_path) as broker:
        broker.produce("t", b"recent", partition=0)  # stamped now; the rest are from 2023
    r = grouped("group", "reset-offsets", "g", "--topic", "t", "--by-duration", "1h", "--execute")
    assert r.exit_code == 0, r
    assert offsets(grouped) == {("t", 0): 10, ("t", 1): 10}


def test_reset_selected_partitions_and_all_topics(grouped: Invoker) -> None:
    r = grouped("group", "reset-offsets", "g", "--topic", "t:1", "--to-earliest", "--execute")
    assert r.exit_code == 0
    assert offsets(grouped) == {("t", 0): 4, ("t", 1): 0}
    r = grouped("group", "reset-offsets", "g", "--all-topics", "--to-latest", "--execute")
    assert r.exit_code == 0
    assert offsets(grouped) == {("t", 0): 10, ("t", 1): 10}
    # --topic on a topic the group never read starts offsets there.
    r = grouped("group", "reset-offsets", "g", "--topic", "other", "--to-earliest", "--execute")
    assert r.exit_code == 0 and offsets(grouped)[("other", 0)] == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--topic", "t"], "exactly one reset strategy"),
        (["--topic", "t", "--to-earliest", "--to-latest"], "exactly one reset strategy"),
        (["--to-earliest"], "--topic"),
        (["--topic", "t", "--all-topics", "--to-earliest"], "--topic"),
        (["--topic", "t:x", "--to-earliest"], "invalid --topic"),
        (["--topic", "t:7", "--to-earliest"], "no partition 7"),
        (["--topic", "t", "--to-offset", "-1"], "invalid offset"),
        (["--topic", "t", "--by-duration", "soon"], "invalid duration"),
        (["--topic", "t", "--to-datetime", "yesterday"], "invalid time"),
        (["--topic", "nope", "--to-earliest"], "does not exist"),
    ],
)
def test_reset_bad_input(grouped: Invoker, args: list[str], fragment: str) -> None:
    before = offsets(grouped)
    r = grouped("group", "reset-offsets", "g", *args, "--execute")
    assert r.exit_code in (2, 3), r
    assert fragment in r.stderr
    assert offsets(grouped) == before


def test_reset_refused_while_members_are_live(grouped: Invoker) -> None:
    consumer = Consumer(grouped.db_path, "t", group="g", session_timeout=30)
    try:
        r = grouped("group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--execute")
        assert r.exit_code == 2 and "live member" in r.stderr
        assert offsets(grouped) == {("t", 0): 4, ("t", 1): 6}
        dry = grouped("group", "reset-offsets", "g", "--topic", "t", "--to-earliest")
        assert dry.exit_code == 0  # planning is always allowed
        forced = grouped(
            "group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--execute", "--force"
        )
        assert forced.exit_code == 0
        assert offsets(grouped) == {("t", 0): 0, ("t", 1): 0}
    finally:
        consumer.close(commit=False)


def test_delete_and_delete_offsets(grouped: Invoker) -> None:
    consumer = Consumer(grouped.db_path, "t", group="g", session_timeout=30)
    try:
        r = grouped("group", "delete", "g")
        assert r.exit_code == 2 and "live member" in r.stderr
        r = grouped("group", "delete-offsets", "g", "--topic", "t")
        assert r.exit_code == 2 and "consumes 't'" in r.stderr
    finally:
        consumer.close(commit=False)
    with Broker(grouped.db_path) as broker:
        broker.commit_offsets("g", {("other", 0): 0})
    r = grouped("group", "delete-offsets", "g", "--topic", "t")
    assert r.exit_code == 0 and "deleted 2 offsets" in r.stderr
    assert offsets(grouped) == {("other", 0): 0}
    assert grouped("group", "delete", "g").exit_code == 0
    assert grouped("group", "list").stdout == ""
    r = grouped("group", "delete", "g")
    assert r.exit_code == 3


def test_group_on_a_terminal_free_database(cli: Invoker) -> None:
    assert cli("group", "list").exit_code == 3  # no database: nothing created
    assert not Path(cli.db_path).exists()


def _on_terminal(db_path: Path, *args: str) -> tuple[int, str]:
    term = Terminal([PUBSUB, *args], cli_env(db_path, NO_COLOR="1"))
    try:
        code = term.finish()
    finally:
        term.proc.kill()
    return code, term.text


def test_describe_on_a_terminal_says_no_members(grouped: Invoker) -> None:
    code, text = _on_terminal(grouped.db_path, "group", "describe", "g")
    assert code == 0, text
    assert "group g: empty" in text and "committed" in text  # the partitions table
    assert "no members" in text
    assert "last heartbeat" not in text  # no empty members table


def test_describe_all(grouped: Invoker) -> None:
    with Broker(grouped.db_path) as broker:
        broker.commit_offsets("a", {("other", 0): 0})
    r = grouped("group", "describe", "--all")
    assert r.exit_code == 0, r
    described = jsonl(r.stdout)  # JSON Lines when piped: one object per group, by name
    assert [d["name"] for d in described] == ["a", "g"]
    for d in described:
        [alone] = jsonl(grouped("group", "describe", str(d["name"])).stdout)
        assert d == alone
    consumer = Consumer(grouped.db_path, "t", group="g", session_timeout=30)
    try:
        code, text = _on_terminal(grouped.db_path, "group", "describe", "--all")
    finally:
        consumer.close(commit=False)
    assert code == 0, text
    # One section per group, in order: a has no members, g has one.
    assert text.index("group a: empty") < text.index("no members") < text.index("group g: ")
    assert text.count("last heartbeat") == 1 and consumer.member_id in text


def test_describe_all_without_groups_prints_nothing(cli: Invoker) -> None:
    with Broker(cli.db_path) as broker:
        broker.create_topic("t")
    r = cli("group", "describe", "--all")
    assert (r.exit_code, r.stdout) == (0, ""), r
    assert cli("group", "describe", "--all", "--json").stdout == ""


@pytest.mark.parametrize("args", [["g", "--all"], []], ids=["both", "neither"])
def test_describe_needs_a_name_or_all(grouped: Invoker, args: list[str]) -> None:
    r = grouped("group", "describe", *args)
    assert r.exit_code == 2 and r.stdout == "", r
    assert "error: " in r.stderr and "--all" in r.stderr
