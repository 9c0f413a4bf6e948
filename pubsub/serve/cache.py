"""Encoded record batches of recent fetches, so that the next fetch of a range costs a lookup.

A Fetch answer is mostly one record batch per partition, built from the partition's rows
(:func:`~pubsub.kafka.wire.codec.encode_rows`). The same range is asked for again by every
consumer group that reads the topic, and the range after it by the same consumer a moment
later: the server encodes that next range ahead, while the consumer is busy with the last one
(:meth:`BatchCache.plan_ahead`). The cache is bounded in bytes and drops the least recently
used batches first.

Stored records never change; they can only be deleted (retention, delete-records, compaction,
topic deletion), by this process or any other. So an entry is keyed by topic id (never reused),
partition and base offset, and served only after the partition's row, read in the same
transaction as the fetch's watermarks, shows that every record of the entry is still there:
the log start offset is at or below its first offset, its end at or below the high watermark,
and the partition has no hole (records stored = next offset - log start offset; holes are never
filled again).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from typing import NamedTuple

__all__ = ["DEFAULT_CACHE_BYTES", "BatchCache", "CachedBatch"]

#: The default bound of a server's cache: about 300,000 records of 100 bytes.
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024


class CachedBatch(NamedTuple):
    """An encoded batch holding the records of offsets ``[base, end)``."""

    base: int
    end: int
    data: bytes


class BatchCache:
    """Encoded batches by (topic id, partition, base offset); safe to share between threads."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int, int], CachedBatch] = OrderedDict()
        self._bases: dict[tuple[int, int], list[int]] = {}
        self._planned: dict[tuple[int, int, int], threading.Event] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def find(
        self, topic_id: int, partition: int, offset: int, extent: tuple[int, int, int]
    ) -> CachedBatch | None:
        """The entry holding ``offset`` if every record of it is still stored, per the
        partition's ``extent`` (log start offset, next offset, records stored)."""
        start, end, stored = extent
        if stored != end - start:
            return None  # a hole: some record may be gone from an entry
        with self._lock:
            bases = self._bases.get((topic_id, partition))
            if not bases:
                return None
            at = bisect.bisect_right(bases, offset) - 1
            if at < 0:
                return None
            key = (topic_id, partition, bases[at])
            entry = self._entries[key]
            if not (start <= entry.base and offset < entry.end <= end):
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, topic_id: int, partition: int, entry: CachedBatch) -> None:
        """Remember an entry (unless one starts at the same offset), dropping the least
        recently used ones beyond the bound."""
        key = (topic_id, partition, entry.base)
        size = len(entry.data)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = entry
            bisect.insort(self._bases.setdefault((topic_id, partition), []), entry.base)
            self.size += size
            while self.size > self.max_bytes:
                old_key, old = self._entries.popitem(last=False)
                self.size -= len(old.data)
                bases = self._bases[old_key[:2]]
                del bases[bisect.bisect_left(bases, old_key[2])]
                if not bases:
                    del self._bases[old_key[:2]]

    def plan_ahead(self, topic_id: int, partition: int, offset: int) -> bool:
        """True once per (partition, offset) not cached yet: the caller then encodes the
        range from ``offset``, puts it, and calls :meth:`unplan` in any case."""
        key = (topic_id, partition, offset)
        with self._lock:
            if key in self._planned or key in self._entries:
                return False
            self._planned[key] = threading.Event()
            return True

    def unplan(self, topic_id: int, partition: int, offset: int) -> None:
        """The planned range is done (put, or given up): wake whoever waits for it."""
        with self._lock:
            event = self._planned.pop((topic_id, partition, offset), None)
        if event is not None:
            event.set()

    def wait_planned(self, topic_id: int, partition: int, offset: int, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) while the range from ``offset`` is being
        encoded ahead: finding it then is cheaper than encoding it a second time."""
        with self._lock:
            event = self._planned.get((topic_id, partition, offset))
        if event is not None:
            event.wait(timeout)
