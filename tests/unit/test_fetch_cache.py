"""BatchCache: lookups by the offset a batch holds, checks against the partition's extent,
and the byte bound."""

from pubsub.serve.cache import BatchCache, CachedBatch


def batch(base: int, end: int, size: int = 10) -> CachedBatch:
    return CachedBatch(base, end, bytes(size))


def test_find_returns_the_batch_holding_the_offset() -> None:
    cache = BatchCache(1000)
    cache.put(1, 0, batch(0, 10))
    cache.put(1, 0, batch(10, 25))
    extent = (0, 30, 30)  # log start, next offset, records stored
    assert cache.find(1, 0, 0, extent) == batch(0, 10)
    assert cache.find(1, 0, 9, extent) == batch(0, 10)
    assert cache.find(1, 0, 10, extent) == batch(10, 25)
    assert cache.find(1, 0, 25, extent) is None
    assert cache.find(1, 1, 0, extent) is None  # another partition
    assert cache.find(2, 0, 0, extent) is None  # another topic (id)


def test_find_serves_only_batches_whose_records_are_all_stored() -> None:
    cache = BatchCache(1000)
    cache.put(1, 0, batch(0, 10))
    assert cache.find(1, 0, 5, (0, 10, 10)) is not None
    assert cache.find(1, 0, 5, (1, 10, 9)) is None  # offset 0 deleted: the log start moved
    assert cache.find(1, 0, 5, (0, 10, 9)) is None  # a hole (compaction)
    assert cache.find(1, 0, 5, (0, 8, 8)) is None  # beyond the high watermark seen


def test_the_least_recently_used_batches_go_first() -> None:
    cache = BatchCache(30)
    extent = (0, 100, 100)
    for base in (0, 10, 20):
        cache.put(1, 0, batch(base, base + 10))
    assert cache.find(1, 0, 0, extent) is not None  # now the most recently used
    cache.put(1, 0, batch(30, 40))
    assert cache.size == 30
    assert cache.find(1, 0, 10, extent) is None
    assert [cache.find(1, 0, o, extent) is not None for o in (0, 20, 30)] == [True] * 3
    cache.put(1, 0, batch(40, 50, size=31))  # larger than the whole bound: not kept
    assert cache.find(1, 0, 40, extent) is None and cache.size == 30


def test_a_range_is_planned_once_until_done() -> None:
    cache = BatchCache(1000)
    assert cache.plan_ahead(1, 0, 10)
    assert not cache.plan_ahead(1, 0, 10)
    cache.put(1, 0, batch(10, 20))
    cache.unplan(1, 0, 10)
    cache.wait_planned(1, 0, 10, 5.0)  # returns at once: nothing planned
    assert not cache.plan_ahead(1, 0, 10)  # cached now
