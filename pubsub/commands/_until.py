"""``consume --until``: where each partition stops, by offset or by time."""

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pubsub.backend import LogClient, LogConsumer
    from pubsub.records import Record, TopicPartition


class StopPoint:
    """Where ``--until`` stops each partition: before offset N, or before the first record
    at or after a time.

    A time's stop offset is found through the time index (O(log n)) at the start. With
    --follow, a partition that has no record at or after the time yet stays open: it stops at
    the first such record that arrives, or, once the clock reaches the time, at its end then
    (read under the write lock: every record appended later is stamped after the time).
    """

    def __init__(
        self,
        consumer: "LogConsumer",
        client: "LogClient",
        spec: tuple[str, int],
        partitions: "list[TopicPartition] | list[tuple[str, int]]",
        follow: bool,
    ) -> None:
        from pubsub.records import TopicPartition

        kind, value = spec
        self.client = client
        self.time = value if kind == "time" else None
        self.open: set[TopicPartition] = set()
        stops: dict[TopicPartition, int] = {}
        for tp in map(TopicPartition._make, partitions):
            if self.time is None:
                stops[tp] = value
                continue
            found = client.offset_for_time(tp.topic, tp.partition, value)
            if found is not None:
                stops[tp] = found
            elif follow:
                self.open.add(tp)
            # else: nothing at or after the time yet, so the end (stop_at_end) is the stop
        consumer.stop_at(stops)

    def seconds_left(self) -> float:
        """Until the clock reaches the stop time, while some partition is still open."""
        if not self.open or self.time is None:
            return math.inf
        return max(0.0, (self.time - self.client.now()) / 1000)

    def cut(self, consumer: "LogConsumer", records: "list[Record]") -> "list[Record]":
        """Drop the first record at or after the time of an open partition, and all after it."""
        if not self.open:
            return records
        assert self.time is not None
        from pubsub.records import TopicPartition

        limit, open_ = self.time, self.open
        kept: list[Record] = []
        cut: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record[0], record[1])
            if tp in cut:
                continue
            if tp in open_ and record[3] >= limit:
                cut[tp] = record[2]
                continue
            kept.append(record)
        for tp, offset in cut.items():
            consumer.seek(tp, offset)  # the record at the stop is the next one, not consumed
        consumer.stop_at(cut)
        open_.difference_update(cut)
        return kept

    def finished(self, consumer: "LogConsumer") -> bool:
        """Every partition this member reads reached its stop (and none is on its way)."""
        if self.open and self.seconds_left() <= 0:
            self._settle(consumer)
        if self.open.intersection(consumer.assignment):
            return False
        return consumer.at_end

    def _settle(self, consumer: "LogConsumer") -> None:
        assert self.time is not None
        stops = {}
        for topic in sorted({tp.topic for tp in self.open}):
            marks = self.client.settled_watermarks(topic)
            for tp in [tp for tp in self.open if tp.topic == topic]:
                end = marks[tp.partition][1]
                found = self.client.offset_for_time(tp.topic, tp.partition, self.time)
                stops[tp] = end if found is None else min(found, end)
        consumer.stop_at(stops)
        self.open.clear()
