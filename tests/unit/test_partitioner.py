"""Kafka-compatible partitioning."""

import pytest

from pubsub.partitioner import RoundRobin, murmur2, partition_for_key

# Kafka's own test vectors (UtilsTest.testMurmur2 in apache/kafka).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_murmur2_every_tail_length() -> None:
    # Lengths 0..7 exercise every branch of the tail; values are signed 32-bit.
    seen = {murmur2(b"x" * n) for n in range(8)}
    assert len(seen) == 8
    assert all(-(2**31) <= h < 2**31 for h in seen)


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_partition_is_positive_hash_modulo(data: bytes, expected: int) -> None:
    for partitions in (1, 3, 7, 12):
        assert partition_for_key(data, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_round_robin_cycles_from_its_seed() -> None:
    rr = RoundRobin(seed=5)
    assert [rr.next(3) for _ in range(6)] == [2, 0, 1, 2, 0, 1]


def test_round_robin_start_differs_between_instances() -> None:
    starts = {RoundRobin().next(1000) for _ in range(20)}
    assert len(starts) > 1
