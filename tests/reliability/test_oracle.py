"""The oracle itself, on synthetic histories: a correct history passes, each invariant broken
once fails, and the n log n group check agrees with a direct (quadratic) reading of the rules.

The histories are made by :func:`synthetic_history`, a small simulation of group members
that poll, commit, hand partitions over and die, printing the lines ``workers.py`` prints.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from itertools import pairwise
from pathlib import Path

import pytest

from pubsub import Broker
from tests.reliability.oracle import (
    GroupReport,
    check_commits_monotonic,
    check_delivered_below_commit,
    check_log,
    check_member_lines,
    integrity,
)

pytestmark = pytest.mark.reliability

GROUP, TOPIC = "g", "t"
Final = dict[tuple[str, str, int], int]


def synthetic_history(
    seed: int, *, partitions: int = 6, rounds: int = 400, batch: int = 20
) -> tuple[list[str], Final]:
    """P/D/S/C lines of a correct group history, and the final committed offsets.

    Three members at a time share ``partitions``; each round one of them polls (up to
    ``batch`` records of each partition it owns), usually commits what it read, and now and
    then dies (its partitions go to the others from the last commit, so records after it are
    delivered again) or hands a partition over after committing it.
    """
    rng = random.Random(seed)
    clock = 0.0

    def tick() -> str:
        nonlocal clock
        clock += rng.uniform(0.0001, 0.001)
        return f"{clock:.6f}"

    lines: list[str] = []
    end = [0] * partitions
    committed = [0] * partitions
    position = [0] * partitions
    owner: list[str] = [""] * partitions
    live: list[str] = []
    serial = 0

    def give(p: int, member: str) -> None:
        owner[p] = member
        position[p] = committed[p]
        lines.append(f"S {member} {p} {tick()}")

    for _ in range(3):
        serial += 1
        live.append(f"m{serial}")
    for p in range(partitions):
        give(p, live[p % len(live)])
    for _ in range(rounds):
        for p in range(partitions):
            end[p] += rng.randint(0, batch)
        member = rng.choice(live)
        mine = [p for p in range(partitions) if owner[p] == member]
        before, after = tick(), tick()
        poll = [f"P {member} {before} {after}"]
        read: dict[int, int] = {}
        for p in mine:
            upto = min(end[p], position[p] + rng.randint(1, batch))
            poll += [f"D {member} {p} {o} {after}" for o in range(position[p], upto)]
            if upto > position[p]:
                read[p] = position[p] = upto
        if read:
            lines.extend(poll)
            if rng.random() < 0.7:
                at = tick()
                for p, o in sorted(read.items()):
                    lines.append(f"C {member} {p} {o} {at}")
                    committed[p] = o
        roll = rng.random()
        if roll < 0.06:  # killed: a new member joins, the orphans move from the last commit
            live.remove(member)
            serial += 1
            live.append(f"m{serial}")
            for p in mine:
                give(p, rng.choice(live))
        elif roll < 0.12 and mine:  # a clean hand-over: commit, then the target takes it
            p = rng.choice(mine)
            if position[p] != committed[p]:
                committed[p] = position[p]
                lines.append(f"C {member} {p} {position[p]} {tick()}")
            give(p, rng.choice([m for m in live if m != member]))
    return lines, {(GROUP, TOPIC, p): committed[p] for p in range(partitions)}


def reference_check(lines: Iterable[str], final: Mapping[tuple[str, str, int], int]) -> None:
    """The group rules read directly (every commit per delivery, every assignment per
    commit): the definition the fast oracle must agree with."""
    polls: dict[tuple[str, float], float] = {}
    delivered: list[tuple[str, int, int, float]] = []
    commits: list[tuple[float, str, int, int]] = []
    assigned: list[tuple[float, str, int]] = []
    for line in lines:
        kind, *f = line.split()
        if kind == "P":
            polls[(f[0], float(f[2]))] = float(f[1])
        elif kind == "D":
            delivered.append((f[0], int(f[1]), int(f[2]), float(f[3])))
        elif kind == "C":
            commits.append((float(f[3]), f[0], int(f[1]), int(f[2])))
        elif kind == "S":
            assigned.append((float(f[2]), f[0], int(f[1])))
    commits.sort()
    check_commits_monotonic((GROUP, TOPIC, p, o) for _, _, p, o in commits)
    seen: dict[int, set[int]] = defaultdict(set)
    for _, p, o, _ in delivered:
        seen[p].add(o)
    for (_, _, p), offset in final.items():
        assert all(o in seen[p] for o in range(offset)), f"{p}: never delivered"
    for member, p, o, t_after in delivered:
        t_before = polls[(member, t_after)]
        floor = max((c for t, _, q, c in commits if q == p and t < t_before), default=0)
        assert o >= floor, f"{member} got {p}@{o} after offset {floor} was committed"
    for t, member, p, _ in commits:
        mine = [ta for ta, m, q in assigned if m == member and q == p and ta <= t]
        assert mine, f"{member} committed {p} without being assigned it"
        since = max(mine)
        assert not [ta for ta, m, q in assigned if q == p and m != member and since < ta < t]


def verdict(check: Callable[..., object], *args: object) -> str | None:
    """None when ``check(*args)`` passes, else its AssertionError message."""
    try:
        check(*args)
    except AssertionError as exc:
        return str(exc) or "failed"
    return None


# -- mutations: each breaks one rule of a correct history ------------------------------------


def _fields(lines: list[str], kind: str) -> list[tuple[int, list[str]]]:
    return [(i, line.split()[1:]) for i, line in enumerate(lines) if line.startswith(kind + " ")]


def commit_goes_back(lines: list[str], final: Final, rng: random.Random) -> None:
    """I4: two commits of one partition, the later one lower."""
    by_p: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
    for i, f in _fields(lines, "C"):
        by_p[f[1]].append((i, f))
    pairs = [(a, b) for c in by_p.values() for a, b in pairwise(c)
             if int(a[1][2]) < int(b[1][2])]  # fmt: skip
    (i, a), (j, b) = rng.choice(pairs)
    lines[i] = f"C {a[0]} {a[1]} {b[2]} {a[3]}"
    lines[j] = f"C {b[0]} {b[1]} {a[2]} {b[3]}"


def hole_below_commit(lines: list[str], final: Final, rng: random.Random) -> None:
    """I5: an offset below the final commit that was delivered once is never delivered."""
    count: dict[tuple[str, str], int] = defaultdict(int)
    for _, f in _fields(lines, "D"):
        count[(f[1], f[2])] += 1
    once = [i for i, f in _fields(lines, "D") if count[(f[1], f[2])] == 1
            and int(f[2]) < final[(GROUP, TOPIC, int(f[1]))]]  # fmt: skip
    del lines[rng.choice(once)]


def redelivered_below_commit(lines: list[str], final: Final, rng: random.Random) -> None:
    """Duplicates only after the last commit: a poll that began after a commit of offset c
    delivers an offset below c."""
    commits = [(float(f[3]), int(f[1]), int(f[2])) for _, f in _fields(lines, "C")]
    polls = [(i, f) for i, f in _fields(lines, "P")]
    for i, (member, before, after) in reversed(polls):
        done = [(p, c) for t, p, c in commits if t < float(before) and c > 0]
        if done:
            p, c = rng.choice(done)
            lines.insert(i + 1, f"D {member} {p} {rng.randrange(c)} {after}")
            return
    raise AssertionError("no poll after a commit")


def commit_after_takeover(lines: list[str], final: Final, rng: random.Random) -> None:
    """I6: another member is assigned the partition between a member's assignment and its
    commit (the stale owner's commit should have been fenced)."""
    assigned = [(float(f[2]), f[0], f[1]) for _, f in _fields(lines, "S")]
    members = sorted({m for _, m, _ in assigned})
    i, f = rng.choice(_fields(lines, "C"))
    member, p, t = f[0], f[1], float(f[3])
    since = max(ta for ta, m, q in assigned if m == member and q == p and ta <= t)
    other = rng.choice([m for m in members if m != member])
    lines.insert(i, f"S {other} {p} {(since + t) / 2:.6f}")


def commit_without_assignment(lines: list[str], final: Final, rng: random.Random) -> None:
    """I6: a commit by a member that was never assigned the partition."""
    i, f = rng.choice(_fields(lines, "C"))
    lines.insert(i + 1, f"C intruder {f[1]} {f[2]} {f[3]}")


MUTATIONS = {
    "I4 commit goes back": (commit_goes_back, "after"),
    "I5 hole below the final commit": (hole_below_commit, "never delivered"),
    "redelivered below a commit": (redelivered_below_commit, "was committed"),
    "I6 commit after another member took it": (commit_after_takeover, "took it"),
    "I6 commit without assignment": (commit_without_assignment, "without being assigned"),
}


def test_a_correct_history_passes() -> None:
    for seed in range(5):
        lines, final = synthetic_history(seed)
        report = check_member_lines(lines, GROUP, TOPIC, final)
        assert report.delivered == sum(line.startswith("D ") for line in lines)
        assert report.commits == sum(line.startswith("C ") for line in lines)
        assert report.redelivered > 0  # the simulation's deaths did cause redeliveries
        assert report.covered == sum(final.values())


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_broken_rule_is_caught(name: str) -> None:
    mutate, message = MUTATIONS[name]
    for seed in range(5):
        lines, final = synthetic_history(seed)
        mutate(lines, final, random.Random(seed))
        fast = verdict(check_member_lines, lines, GROUP, TOPIC, final)
        assert fast is not None and message in fast, (seed, fast)


def test_agrees_with_the_direct_reading_on_random_histories() -> None:
    rng = random.Random(2026)
    outcomes: dict[str, int] = defaultdict(int)
    for trial in range(300):
        lines, final = synthetic_history(trial, partitions=rng.choice((1, 2, 3)), rounds=60)
        name = rng.choice([None, *MUTATIONS])
        if name is not None:
            try:
                MUTATIONS[name][0](lines, final, rng)
            except (IndexError, ValueError, AssertionError):
                name = None  # this history has nothing to break that way (e.g. no commit)
        fast = verdict(check_member_lines, lines, GROUP, TOPIC, final)
        slow = verdict(reference_check, lines, final)
        assert (fast is None) == (slow is None), (trial, name, fast, slow)
        assert (fast is None) == (name is None), (trial, name, fast)
        outcomes[name or "correct"] += 1
    assert len(outcomes) == len(MUTATIONS) + 1, outcomes


def test_group_report_counts() -> None:
    lines = [
        "S a 0 1.0",
        "P a 1.5 2.0",
        "D a 0 0 2.0",
        "D a 0 1 2.0",
        "C a 0 2 3.0",
        "S b 0 4.0",  # a died after committing; b starts at 2
        "P b 4.5 5.0",
        "D b 0 2 5.0",
        "F a 0 2",
        "C b 0 3 6.0",
    ]
    report = check_member_lines(lines, GROUP, TOPIC, {(GROUP, TOPIC, 0): 3})
    assert report == GroupReport(delivered=3, redelivered=0, commits=2, fenced=1, covered=3)
    again = [*lines, "P b 6.5 7.0", "D b 0 3 7.0", "D b 0 2 7.0"]  # 2 is below the commit
    assert "b got 0@2 after offset 3" in str(
        verdict(check_member_lines, again, GROUP, TOPIC, {(GROUP, TOPIC, 0): 3})
    )


def test_delivered_below_commit_counts_from_the_start() -> None:
    delivered = [(GROUP, TOPIC, 0, o) for o in range(5, 10)]
    assert check_delivered_below_commit(delivered, {(GROUP, TOPIC, 0): 10}, {(TOPIC, 0): 5}) == 5
    with pytest.raises(AssertionError, match=r"never delivered \[4\]"):
        check_delivered_below_commit(delivered, {(GROUP, TOPIC, 0): 10}, {(TOPIC, 0): 4})


# -- the log checks (I1-I3) on real files ----------------------------------------------------


def _log(tmp_path: Path) -> tuple[Path, dict[tuple[str, int, int], bytes]]:
    db = tmp_path / "log.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=1)
        metas = broker.produce_batch(TOPIC, [f"v{i}".encode() * 50 for i in range(500)])
        broker.store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db, {(TOPIC, m.partition, m.offset): f"v{i}".encode() * 50 for i, m in
                enumerate(metas)}  # fmt: skip


def test_log_checks_pass_on_a_correct_log(tmp_path: Path) -> None:
    db, acked = _log(tmp_path)
    report = check_log(db, acked)
    assert (report.acked, report.present, report.lost, report.unacked_stored) == (500, 500, 0, 0)


def test_i1_a_damaged_page_fails(tmp_path: Path) -> None:
    db, _ = _log(tmp_path)
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_schema WHERE name = 'log_1_0'"
    ).fetchone()  # an interior page of the log's B-tree: its child pointers
    conn.close()
    with open(db, "r+b") as handle:
        handle.seek((root - 1) * page_size + 12)
        handle.write(b"\xff" * 64)
    with pytest.raises((AssertionError, sqlite3.DatabaseError)):
        integrity(db)


def test_i2_a_missing_acknowledged_record_fails(tmp_path: Path) -> None:
    db, acked = _log(tmp_path)
    with pytest.raises(AssertionError, match="missing"):
        check_log(db, {**acked, (TOPIC, 0, 500): b"never stored"})
    # ... unless the mode allows losing a suffix, and then only a suffix.
    assert check_log(db, {**acked, (TOPIC, 0, 500): b"x"}, allow_suffix_loss=True).lost == 1


def test_i3_an_offset_holding_another_record_fails(tmp_path: Path) -> None:
    db, acked = _log(tmp_path)
    with pytest.raises(AssertionError, match="acknowledged"):
        check_log(db, {**acked, (TOPIC, 0, 7): b"another record"})


def test_i3_an_offset_beyond_the_next_offset_fails(tmp_path: Path) -> None:
    db, acked = _log(tmp_path)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE partitions SET next_offset = 400")  # offsets 400.. would be reused
    conn.close()
    with pytest.raises(AssertionError, match="outside"):
        check_log(db, acked)
