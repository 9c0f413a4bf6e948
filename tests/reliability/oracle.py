"""The oracle of the fault suites: what was acknowledged, checked against what is stored.

A workload records outside the database every acknowledged produce and every consumed and
committed offset (workers print them to stdout, one line each, flushed before anything else
happens). After the faults, :func:`check_log` and the group checks verify:

- I1 ``PRAGMA integrity_check`` is ok;
- I2 every acknowledged record is present (or, where a mode allows it, only a suffix of
  each partition's acknowledged records is missing);
- I3 per partition, offsets strictly increase, are never reused, and every stored offset is
  between the log start and the next offset;
- I4 a group's committed offsets never decrease;
- I5 every record below a group's final committed offset was delivered at least once;
- I6 no partition was owned by two live members at once.

Each check raises ``AssertionError`` with the first counter-example and returns numbers for the
summary table (see ``conftest.py``).
"""

from __future__ import annotations

import os
import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: (topic, partition, offset) -> value bytes, for acknowledged records
Acked = Mapping[tuple[str, int, int], bytes]


def scale(test: int, soak: int) -> int:
    """The count for this run: ``test`` in ``make test``, ``soak`` in ``make soak``."""
    return soak if os.environ.get("PUBSUB_SOAK") else test


def integrity(db: Path) -> None:
    """I1: SQLite's full integrity check on a fresh connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    assert rows == ["ok"], f"integrity_check of {db}: {rows[:5]}"


@dataclass
class Stored:
    """What the file holds, read with plain sqlite3 (not through pubsub's own code)."""

    #: (topic, partition) -> (log_start_offset, next_offset)
    partitions: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    #: (topic, partition) -> {offset: value}
    records: dict[tuple[str, int], dict[int, bytes | None]] = field(default_factory=dict)
    #: (group, topic, partition) -> committed offset
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)


def read_stored(db: Path) -> Stored:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    stored = Stored()
    try:
        rows = conn.execute(
            "SELECT t.name, t.topic_id, p.partition, p.log_start_offset, p.next_offset "
            "FROM topics AS t JOIN partitions AS p ON p.topic_id = t.topic_id"
        ).fetchall()
        for name, topic_id, partition, start, end in rows:
            stored.partitions[(name, partition)] = (start, end)
            table = f"log_{int(topic_id)}_{int(partition)}"
            stored.records[(name, partition)] = dict(
                conn.execute(f'SELECT "offset", value FROM {table} ORDER BY "offset"')
            )
        for group, topic, partition, offset in conn.execute(
            "SELECT g.name, t.name, o.partition, o.committed_offset FROM group_offsets AS o "
            "JOIN consumer_groups AS g ON g.group_id = o.group_id "
            "JOIN topics AS t ON t.topic_id = o.topic_id"
        ):
            stored.committed[(group, topic, partition)] = offset
    finally:
        conn.close()
    return stored


@dataclass
class LogReport:
    acked: int = 0
    present: int = 0
    lost: int = 0  # acknowledged but missing (only allowed as a suffix, when allowed)
    unacked_stored: int = 0  # stored though never acknowledged: the crash window was hit
    partitions: int = 0


def check_log(db: Path, acked: Acked, *, allow_suffix_loss: bool = False) -> LogReport:
    """I1, I2 and I3 for a database and the records acknowledged to clients."""
    integrity(db)
    stored = read_stored(db)
    report = LogReport(acked=len(acked), partitions=len(stored.partitions))
    # I3: offsets in range, strictly increasing (a dict keyed by offset cannot repeat one,
    # so "never reused" is checked against the acknowledgements below).
    for tp, records in stored.records.items():
        start, end = stored.partitions[tp]
        offsets = list(records)
        assert offsets == sorted(offsets), f"{tp}: offsets out of order"
        if offsets:
            assert offsets[0] >= start and offsets[-1] < end, (
                f"{tp}: offsets {offsets[0]}..{offsets[-1]} outside [{start}, {end})"
            )
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (topic, partition, offset), value in acked.items():
        by_partition[(topic, partition)].append(offset)
        records = stored.records.get((topic, partition), {})
        if offset in records:
            # I3: an offset acknowledged for one record never holds another.
            assert records[offset] == value, (
                f"{topic}/{partition}@{offset}: acknowledged {value!r}, stored {records[offset]!r}"
            )
            report.present += 1
        else:
            start, _ = stored.partitions.get((topic, partition), (0, 0))
            assert offset >= start, f"{topic}/{partition}@{offset}: below the log start"
            report.lost += 1
    if report.lost:
        assert allow_suffix_loss, f"{report.lost} acknowledged record(s) missing"
        for tp, offsets in by_partition.items():
            records = stored.records.get(tp, {})
            missing = [o for o in offsets if o not in records]
            if missing:
                first = min(missing)
                # Only a suffix: nothing acknowledged after the first loss survived either.
                survivors = [o for o in offsets if o > first and o in records]
                assert not survivors, f"{tp}: lost {first} but kept later {survivors[:3]}"
                # And no gap: the partition's next offset did not move past the loss.
                assert stored.partitions.get(tp, (0, 0))[1] <= first or all(
                    o in records for o in range(first, stored.partitions[tp][1])
                ), f"{tp}: a hole after offset {first}"
    acked_offsets = {(t, p, o) for t, p, o in acked}
    report.unacked_stored = sum(
        1
        for (topic, partition), records in stored.records.items()
        for offset in records
        if (topic, partition, offset) not in acked_offsets
    )
    return report


def check_commits_monotonic(commits: Iterable[tuple[str, str, int, int]]) -> int:
    """I4: in the order they were acknowledged, a group's offsets never go down.

    ``commits`` are (group, topic, partition, offset) lines as workers acknowledged them.
    Returns how many were checked.
    """
    last: dict[tuple[str, str, int], int] = {}
    n = 0
    for group, topic, partition, offset in commits:
        key = (group, topic, partition)
        assert offset >= last.get(key, -1), f"{key}: committed {offset} after {last[key]}"
        last[key] = offset
        n += 1
    return n


class DeliveredOffsets:
    """Which offsets of each (group, topic, partition) were delivered: one byte per offset.

    Log offsets are dense, so a byte array indexed by offset is a tenth of the memory of a set
    of ints and lets I5 test a whole range at once (``bytearray.find``, in C).
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, int], bytearray] = {}

    def add(self, key: tuple[str, str, int], offset: int) -> bool:
        """Mark ``offset`` delivered; True if it had been delivered before."""
        assert offset >= 0, f"{key}: delivered a negative offset {offset}"
        marks = self.seen.get(key)
        if marks is None:
            marks = self.seen[key] = bytearray()
        if offset >= len(marks):
            marks.extend(bytes(max(offset + 1 - len(marks), len(marks))))  # amortised growth
        again = marks[offset] == 1
        marks[offset] = 1
        return again

    def check_below(
        self,
        committed: Mapping[tuple[str, str, int], int],
        start: Mapping[tuple[str, int], int] | None = None,
    ) -> int:
        """I5 for ``committed``; returns the number of offsets covered."""
        covered = 0
        for key, offset in committed.items():
            marks = self.seen.get(key, bytearray())
            low = (start or {}).get((key[1], key[2]), 0)
            if offset > low:
                window = marks[low:offset]
                hole = window.find(0)
                if hole >= 0 or len(window) < offset - low:
                    first = low + (hole if hole >= 0 else len(window))
                    missing = [
                        o for o in range(first, min(offset, first + 1000))
                        if o >= len(marks) or not marks[o]
                    ][:5]  # fmt: skip
                    raise AssertionError(f"{key}: committed {offset} but never delivered {missing}")
            covered += max(0, offset - low)
        return covered


def check_delivered_below_commit(
    delivered: Iterable[tuple[str, str, int, int]],
    committed: Mapping[tuple[str, str, int], int],
    start: Mapping[tuple[str, int], int] | None = None,
) -> int:
    """I5: every offset below a group's committed offset was delivered to it at least once.

    ``delivered`` are (group, topic, partition, offset); ``start`` gives the first offset a
    group could read per (topic, partition) (the log start when it began; 0 by default).
    Returns the number of offsets covered. Linear in deliveries plus committed offsets.
    """
    seen = DeliveredOffsets()
    for group, topic, partition, offset in delivered:
        seen.add((group, topic, partition), offset)
    return seen.check_below(committed, start)


def check_exclusive_ownership(
    intervals: Iterable[tuple[str, str, int, str, float, float]],
) -> int:
    """I6: no partition owned by two members at once.

    ``intervals`` are (group, topic, partition, member, start, end) times of ownership as the
    members saw them (monotonic clock of one machine). Returns the number of intervals.
    """
    by_tp: dict[tuple[str, str, int], list[tuple[float, float, str]]] = defaultdict(list)
    n = 0
    for group, topic, partition, member, start, end in intervals:
        by_tp[(group, topic, partition)].append((start, end, member))
        n += 1
    for key, spans in by_tp.items():
        spans.sort()
        held_until, holder = float("-inf"), ""
        for start, end, member in spans:
            assert member == holder or start >= held_until, (
                f"{key}: {holder} held it until {held_until:.3f}, {member} from {start:.3f}"
            )
            if end > held_until:
                held_until, holder = end, member
    return n


@dataclass
class GroupReport:
    delivered: int = 0
    redelivered: int = 0
    commits: int = 0
    fenced: int = 0
    covered: int = 0


def check_member_lines(
    lines: Iterable[str],
    group: str,
    topic: str,
    final: Mapping[tuple[str, str, int], int],
    start: Mapping[tuple[str, int], int] | None = None,
) -> GroupReport:
    """I4, I5, I6 and "duplicates only after the last commit" from group members' lines.

    ``lines`` are the P/D/S/C/F lines printed by members of one group (see ``workers.py``);
    ``final`` the group's committed offsets as stored at the end.

    - I4: per partition, acknowledged commits never go down (in time order);
    - I5: every offset below the final committed offset was delivered at least once;
    - a record is delivered again only at or above the last commit acknowledged before the
      poll that delivered it began;
    - I6: a member's acknowledged commit for a partition is never preceded, since the member
      was assigned it, by another member's assignment of it (a stale owner is fenced).

    O(n log n) in the number of lines, memory linear: the soak's millions of deliveries are
    checked by binary search in per-partition commit and assignment timelines, never by
    scanning every commit per delivery or every assignment per commit.
    """
    report = GroupReport()
    polls: dict[tuple[str, float], float] = {}  # (member, t_after) -> t_before
    members: dict[str, int] = {}  # member name -> index (deliveries keep the index only)
    names: list[str] = []
    # Per partition, columns of the deliveries: member index, offset, t_after.
    d_member: dict[int, array[int]] = defaultdict(lambda: array("l"))
    d_offset: dict[int, array[int]] = defaultdict(lambda: array("q"))
    d_after: dict[int, array[float]] = defaultdict(lambda: array("d"))
    seen = DeliveredOffsets()
    commits: list[tuple[float, str, int, int]] = []
    assigned: list[tuple[float, str, int]] = []
    for line in lines:
        kind, *fields = line.split()
        if kind == "P":
            polls[(fields[0], float(fields[2]))] = float(fields[1])
        elif kind == "D":
            member, p_, o_, t_ = fields
            p, o = int(p_), int(o_)
            index = members.get(member)
            if index is None:
                index = members[member] = len(names)
                names.append(member)
            d_member[p].append(index)
            d_offset[p].append(o)
            d_after[p].append(float(t_))
            report.delivered += 1
            if seen.add((group, topic, p), o):
                report.redelivered += 1
        elif kind == "C":
            member, p_, o_, t_ = fields
            commits.append((float(t_), member, int(p_), int(o_)))
        elif kind == "S":
            member, p_, t_ = fields
            assigned.append((float(t_), member, int(p_)))
        elif kind == "F":
            report.fenced += 1
    commits.sort()
    report.commits = check_commits_monotonic((group, topic, p, o) for _, _, p, o in commits)
    report.covered = seen.check_below(
        {k: v for k, v in final.items() if k[0] == group and k[1] == topic}, start
    )

    # Duplicates only after the last commit: the floor of a delivery is the highest offset
    # committed (acknowledged) before its poll began, a prefix maximum over the partition's
    # commits in time order, found by binary search.
    commit_times: dict[int, list[float]] = defaultdict(list)
    commit_floor: dict[int, list[int]] = defaultdict(list)
    for t, _, p, o in commits:
        floors = commit_floor[p]
        commit_times[p].append(t)
        floors.append(max(o, floors[-1]) if floors else o)
    worst: tuple[float, str, int, int, int] | None = None  # the earliest counter-example
    for p, offsets in d_offset.items():
        times, floors = commit_times.get(p, []), commit_floor.get(p, [])
        for i, o in enumerate(offsets):
            t_after = d_after[p][i]
            member = names[d_member[p][i]]
            t_before = polls[(member, t_after)]
            before = bisect_left(times, t_before)  # commits with t < t_before
            floor = floors[before - 1] if before else 0
            if o < floor and (worst is None or t_after < worst[0]):
                worst = (t_after, member, p, o, floor)
    if worst is not None:
        _, member, p, o, floor = worst
        raise AssertionError(f"{member} got {p}@{o} after offset {floor} was committed")

    # I6: per (member, partition) the assignment times, per partition all of them in order.
    assigned.sort()
    mine_by: dict[tuple[str, int], list[float]] = defaultdict(list)
    all_times: dict[int, list[float]] = defaultdict(list)
    all_by: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for ta, member, p in assigned:
        mine_by[(member, p)].append(ta)
        all_times[p].append(ta)
        all_by[p].append((ta, member))
    for t, member, p, _ in commits:
        mine = mine_by.get((member, p), [])
        last = bisect_right(mine, t)  # this member's assignments at or before the commit
        assert last, f"{member} committed {p} without being assigned it"
        since = mine[last - 1]
        # Any assignment of p strictly between the member's last one and the commit is
        # another member's (a later one of its own would be its last).
        i = bisect_right(all_times[p], since)
        if i < len(all_times[p]) and all_times[p][i] < t:
            raise AssertionError(f"{member} committed {p} at {t} after {all_by[p][i]} took it")
    return report
