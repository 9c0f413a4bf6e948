"""Operator tools: stats, metrics, top, progress bars, help, completion, time zones.

Values are checked against data whose every count, size and timestamp is known; the live
dashboard and the progress bars run on a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pubsub import Broker, Message, ShareConsumer
from pubsub.metrics import METRICS, MIRROR_METRICS, exposition, write_textfile
from tests.helpers import PUBSUB, Terminal, cli_env, run_cli

NOW = 1_800_000_000_000  # a fixed clock, ms
MIN = 60_000
HOUR = 3_600_000
VALUE = b"0123456789"  # 10 bytes


def known_database(db_path: Path) -> Broker:
    """Topic a (2 partitions): partition 0 holds 10 records from 2 h ago, 30 from 30 min
    ago and 6 from 30 s ago; partition 1 is empty. Retention of 1 h then deletes the first
    10. Group g committed 20 on a/0 and 0 on a/1. Topic b has 1 record of 3 bytes with a
    2-byte key."""
    broker = Broker(db_path, clock=lambda: NOW)
    broker.create_topic("a", partitions=2, config={"retention.ms": str(HOUR)})
    broker.create_topic("b")
    messages = (
        [Message(VALUE, partition=0, timestamp=NOW - 2 * HOUR + i) for i in range(10)]
        + [Message(VALUE, partition=0, timestamp=NOW - 30 * MIN + i) for i in range(30)]
        + [Message(VALUE, partition=0, timestamp=NOW - 30_000 + i) for i in range(6)]
    )
    broker.produce_batch("a", messages)
    broker.produce_batch("b", [Message(b"xyz", key=b"kk", timestamp=NOW - 5_000)])
    report = broker.run_retention()
    assert report.deleted_records == 10
    broker.commit_offsets("g", {("a", 0): 20, ("a", 1): 0})
    return broker


def test_stats_values_match_the_known_data(db_path: Path) -> None:
    with known_database(db_path) as broker:
        stats = broker.stats()
        assert stats.file_bytes == os.stat(db_path).st_size
        assert stats.wal_bytes == os.stat(f"{db_path}-wal").st_size > 0
    a, b = stats.topics
    p0, p1 = a.partitions
    assert (p0.records, p0.bytes, p0.log_start_offset, p0.next_offset) == (36, 360, 10, 46)
    assert p0.oldest_ms == NOW - 30 * MIN and p0.newest_ms == NOW - 30_000 + 5
    assert p0.rate_1m == pytest.approx(6 / 60)
    assert p0.rate_1h == pytest.approx(36 / 3600)
    assert (p1.records, p1.bytes, p1.oldest_ms, p1.newest_ms, p1.rate_1m) == (0, 0, None, None, 0)
    assert (a.records, a.bytes) == (36, 360)
    assert (b.records, b.bytes, b.oldest_ms) == (1, 5, NOW - 5_000)
    (group,) = stats.groups
    assert (group.name, group.live_members, group.lag) == ("g", 0, 26)
    assert stats.last_retention_ms == NOW


def _vm_steps(db_path: Path, records: int) -> int:
    """SQLite virtual-machine steps (in hundreds) that one stats snapshot costs."""
    with Broker(db_path, sync="normal", clock=lambda: NOW) as broker:
        broker.create_topic("t", partitions=2)
        for partition in (0, 1):
            step = 2 * HOUR // records
            broker.produce_batch(
                "t",
                [
                    Message(VALUE, partition=partition, timestamp=NOW - 2 * HOUR + i * step)
                    for i in range(records)
                ],
            )
        broker.commit_offsets("g", {("t", 0): records // 2})
        # A share group holding 100 records at the start of each partition: its backlog is
        # the rest of the log, counted from the counters, not from the log.
        share = ShareConsumer(broker, "t", group="q", lock_timeout=600)
        taken = share.acquire(0, 100) + share.acquire(0, 100)  # the second starts at p1
        assert sorted({r.partition for r in taken}) == [0, 1]
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        broker.store.connection.set_progress_handler(count, 100)
        stats = broker.stats()
        broker.store.connection.set_progress_handler(None, 0)
    assert stats.topics[0].records == 2 * records
    (queue,) = stats.share_groups
    assert (queue.acquired, queue.backlog) == (200, 2 * records)
    assert stats.topics[0].rate_1h == pytest.approx(2 * records / 2 / 3600, rel=0.01)
    return steps[0]


def test_stats_cost_does_not_grow_with_the_log(tmp_path: Path) -> None:
    """It must not scan the logs: 100 times the records, about the same work."""
    small = _vm_steps(tmp_path / "small.db", 2_000)
    large = _vm_steps(tmp_path / "large.db", 200_000)
    assert large < small * 1.5 + 50, (small, large)


def test_stats_cli_json(db_path: Path) -> None:
    known_database(db_path).close()
    r = run_cli(db_path, "stats")  # piped: JSON without asking
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    a = data["topics"][0]
    assert (a["name"], a["records"], a["bytes"]) == ("a", 36, 360)
    assert [p["records"] for p in a["partitions"]] == [36, 0]
    assert a["partitions"][0]["log_start_offset"] == 10
    (group,) = data["groups"]
    assert (group["name"], group["members"], group["lag"]) == ("g", 0, 26)
    assert {(p["topic"], p["partition"], p["lag"]) for p in group["partitions"]} == {
        ("a", 0, 26),
        ("a", 1, 0),
    }
    only_b = json.loads(run_cli(db_path, "stats", "b", "--json").stdout)
    assert [t["name"] for t in only_b["topics"]] == ["b"] and only_b["groups"] == []
    missing = run_cli(db_path, "stats", "nope")
    assert missing.returncode == 3 and b"error:" in missing.stderr and not missing.stdout


def test_metrics_parse_with_prometheus_client_and_match(db_path: Path) -> None:
    with known_database(db_path) as broker:
        text = exposition(broker.stats())
        size = os.stat(db_path).st_size
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    p0 = (("partition", "0"), ("topic", "a"))
    assert samples[("pubsub_partition_records", p0)] == 36
    assert samples[("pubsub_partition_bytes", p0)] == 360
    assert samples[("pubsub_partition_log_start_offset", p0)] == 10
    assert samples[("pubsub_partition_next_offset", p0)] == 46
    assert samples[("pubsub_partition_records_produced_total", p0)] == 46
    assert (
        samples[("pubsub_partition_oldest_record_timestamp_seconds", p0)] == (NOW - 30 * MIN) / 1000
    )
    rate = samples[("pubsub_partition_produce_rate_per_second", (*p0, ("window", "1m")))]
    assert rate == pytest.approx(0.1)
    g0 = (("group", "g"), ("partition", "0"), ("topic", "a"))
    assert samples[("pubsub_group_committed_offset", g0)] == 20
    assert samples[("pubsub_group_lag", g0)] == 26
    assert samples[("pubsub_group_members", (("group", "g"),))] == 0
    assert samples[("pubsub_database_size_bytes", ())] == size
    assert samples[("pubsub_retention_last_run_timestamp_seconds", ())] == NOW / 1000
    # Prometheus conventions: the family of a counter drops _total; units are base units.
    assert types["pubsub_partition_records_produced"] == "counter"
    assert all(name.startswith("pubsub_") for name in METRICS)
    assert all(not name.endswith("_total") or METRICS[name][0] == "counter" for name in METRICS)


def test_metrics_textfile_is_written_atomically(db_path: Path, tmp_path: Path) -> None:
    known_database(db_path).close()
    target = tmp_path / "collector" / "pubsub.prom"
    target.parent.mkdir()
    for _ in range(2):  # the second run replaces the first
        r = run_cli(db_path, "metrics", "--textfile", str(target))
        assert r.returncode == 0, r.stderr
        assert r.stdout == b""
    families = {f.name for f in text_string_to_metric_families(target.read_text())}
    assert "pubsub_group_lag" in families
    assert os.listdir(target.parent) == ["pubsub.prom"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter must read it
    missing_dir = run_cli(db_path, "metrics", "--textfile", str(tmp_path / "no" / "x.prom"))
    assert missing_dir.returncode != 0 and b"error:" in missing_dir.stderr


def test_write_textfile_never_shows_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "m.prom"
    write_textfile("a 1\n", str(target))
    before = os.stat(target).st_ino
    write_textfile("a 2\n", str(target))
    assert target.read_text() == "a 2\n"
    assert os.stat(target).st_ino != before  # replaced by rename, not rewritten in place


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(pubsub_[a-z_]+)`", doc))
    assert documented == set(METRICS) | set(MIRROR_METRICS)


def test_piped_output_has_no_escape_codes(db_path: Path) -> None:
    known_database(db_path).close()
    for args in (
        ["stats"],
        ["top"],
        ["metrics"],
        ["topic", "list"],
        ["topic", "describe", "a"],
        ["group", "list"],
        ["group", "describe", "g"],
        ["db", "info"],
        ["--help"],
        ["stats", "--help"],
    ):
        r = run_cli(db_path, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert b"\x1b" not in r.stdout and b"\x1b" not in r.stderr, args


def test_top_without_a_terminal_prints_one_snapshot(db_path: Path) -> None:
    known_database(db_path).close()
    r = run_cli(db_path, "top", timeout=20)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert json.loads(line)["topics"][0]["records"] == 36


def _terminal(db_path: Path, *args: str, **env: str) -> Terminal:
    return Terminal([PUBSUB, *args], cli_env(db_path, **env))


def test_top_refreshes_and_quits_on_q(db_path: Path) -> None:
    known_database(db_path).close()
    with _terminal(db_path, "top", "--interval", "0.2") as term:
        assert term.read_until(b"q: quit", count=3), term.text  # three refreshes drawn
        assert "topics" in term.text and "groups" in term.text and "36" in term.text
        term.send(b"q")
        assert term.finish(timeout=10) == 0
    assert "\x1b[?1049h" in term.text and "\x1b[?1049l" in term.text  # screen restored


def test_top_shows_new_records_and_stops_on_ctrl_c(db_path: Path) -> None:
    known_database(db_path).close()
    with _terminal(db_path, "top", "-i", "0.2") as term:  # killed and reaped however it ends
        assert term.read_until(b"q: quit"), term.text
        with Broker(db_path) as broker:
            broker.produce_batch("b", [b"x"] * 12_345)
        assert term.read_until(b"12,346"), term.text  # b's record count, refreshed
        term.send(b"\x03")  # Ctrl-C through the terminal's line discipline: SIGINT
        assert term.finish(timeout=10) in (0, 130)


def test_tables_honour_no_color_on_a_terminal(db_path: Path) -> None:
    known_database(db_path).close()
    coloured = _terminal(db_path, "stats")
    assert coloured.finish() == 0
    assert "\x1b[" in coloured.text and "partition" in coloured.text
    plain = _terminal(db_path, "stats", NO_COLOR="1")
    assert plain.finish() == 0
    assert "\x1b[" not in plain.text and "partition" in plain.text and "26" in plain.text


def test_utc_option_changes_table_times(db_path: Path) -> None:
    known_database(db_path).close()
    local = _terminal(db_path, "topic", "describe", "a", TZ="Asia/Kolkata", NO_COLOR="1")
    assert local.finish() == 0
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30", local.text), local.text
    utc = _terminal(db_path, "--utc", "topic", "describe", "a", TZ="Asia/Kolkata", NO_COLOR="1")
    assert utc.finish() == 0
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc.text), utc.text


def test_progress_bar_on_a_terminal_only(db_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "lines.txt"
    source.write_bytes(b"".join(b"line %d\n" % i for i in range(200_000)))
    env = cli_env(db_path, PUBSUB_PROGRESS_DELAY="0")
    subprocess.run([PUBSUB, "topic", "create", "t"], env=env, check=True)
    # On a terminal: the bar is drawn on stderr while the file is produced.
    term = Terminal(["sh", "-c", f"{PUBSUB} produce t < {source}"], env)
    assert term.finish() == 0
    assert ("producing to t" in term.text and "MiB" in term.text) or "KiB" in term.text
    # In a pipe: nothing but data and the usual silence.
    with open(source, "rb") as stdin:
        piped = subprocess.run(
            [PUBSUB, "produce", "t"], stdin=stdin, capture_output=True, env=env, check=False
        )
    assert piped.returncode == 0 and piped.stderr == b"" and piped.stdout == b""
    with Broker(db_path) as broker:
        assert sum(end for _, end in broker.watermarks("t").values()) == 400_000
    # Backup and retention draw theirs too, and only on a terminal.
    term = Terminal([PUBSUB, "db", "backup", str(tmp_path / "copy.db")], env)
    assert term.finish() == 0 and "backup" in term.text
    assert (tmp_path / "copy.db").exists()
    term = Terminal([PUBSUB, "retention", "run"], env)
    assert term.finish() == 0 and "retention" in term.text and "\x1b[" in term.text
    piped_retention = run_cli(db_path, "retention", "run", env=env)
    assert b"\x1b" not in piped_retention.stderr


def test_progress_off_switch(db_path: Path, tmp_path: Path) -> None:
    env = cli_env(db_path, PUBSUB_PROGRESS_DELAY="0", PUBSUB_NO_PROGRESS="1", NO_COLOR="1")
    subprocess.run([PUBSUB, "topic", "create", "t"], env=env, check=True)
    term = Terminal([PUBSUB, "db", "backup", str(tmp_path / "copy.db")], env)
    assert term.finish() == 0
    assert "━" not in term.text and "backup written" in term.text


def test_shell_completion_names_topics_and_groups(db_path: Path) -> None:
    known_database(db_path).close()

    def complete(words: str) -> list[str]:
        env = cli_env(
            db_path,
            _PUBSUB_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split(" ")) - 1),
        )
        r = subprocess.run([PUBSUB], env=env, capture_output=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().split()

    assert complete("pubsub consume ") == ["a", "b"]
    assert complete("pubsub produce b") == ["b"]
    assert complete("pubsub group describe ") == ["g"]
    assert "topic" in complete("pubsub to")
    missing = db_path.with_name("absent.db")
    env = cli_env(
        missing, _PUBSUB_COMPLETE="complete_bash", COMP_WORDS="pubsub consume ", COMP_CWORD="2"
    )
    r = subprocess.run([PUBSUB], env=env, capture_output=True, timeout=30, check=False)
    assert r.returncode == 0 and r.stdout.strip() == b"" and not missing.exists()


def test_shell_completion_of_formats_and_offsets(db_path: Path) -> None:
    known_database(db_path).close()

    def complete(words: str) -> list[str]:
        env = cli_env(
            db_path,
            _PUBSUB_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split(" ")) - 1),
        )
        r = subprocess.run([PUBSUB], env=env, capture_output=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().split()

    assert complete("pubsub consume a --format ") == ["raw", "json"]
    assert complete("pubsub consume a --format j") == ["json"]
    offsets = complete("pubsub consume a -o ")
    assert offsets[:3] == ["beginning", "end", "stored"] and "@-1h" in offsets
    assert complete("pubsub consume a --offset b") == ["beginning"]
    assert complete("pubsub consume a --until @-") == ["@-1h", "@-30m", "@-1d"]
    assert complete("pubsub produce a --format ") == ["raw", "json"]


def test_install_completion_end_to_end(db_path: Path, tmp_path: Path) -> None:
    """--install-completion from bash writes a script that bash then uses to complete.

    ``&& true`` keeps bash from exec'ing pubsub in its place: the shell is detected from the
    parent process."""
    known_database(db_path).close()
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(db_path, HOME=str(home))
    r = subprocess.run(
        ["bash", "-c", "pubsub --install-completion && true"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    script = home / ".bash_completions" / "pubsub.sh"
    assert str(script) in (home / ".bashrc").read_text()
    words = 'source "$1"; COMP_WORDS=(pubsub consume ""); COMP_CWORD=2; '
    words += '_pubsub_completion pubsub; echo "${COMPREPLY[@]}"'
    done = subprocess.run(
        ["bash", "-c", words, "complete", str(script)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"a", b"b"]
    shown = subprocess.run(
        ["bash", "-c", "pubsub --show-completion && true"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert shown.returncode == 0 and b"_PUBSUB_COMPLETE=complete_bash" in shown.stdout
