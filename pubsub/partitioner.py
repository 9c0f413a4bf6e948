"""Kafka-compatible partitioning.

A keyed record goes to ``(murmur2(key) & 0x7fffffff) % partitions``, the partition Kafka's Java
producer chooses, so data can move to a Kafka cluster without reshuffling keys. Keyless
records are spread round-robin, one batch at a time (the sticky idea of Kafka's default
partitioner: a batch stays in one partition and one transaction).
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (``Utils.murmur2``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail_start = length & ~3
    for (word,) in _WORDS.iter_unpack(data[:tail_start]):
        k = (word * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail_start + 2] << 16
    if rest >= 2:
        h ^= data[tail_start + 1] << 8
    if rest >= 1:
        h ^= data[tail_start]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=16384)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition a Kafka producer would choose for ``key`` among ``partitions``."""
    return _positive_hash(key) % partitions


class RoundRobin:
    """Chooses the partition of each keyless batch in turn.

    Each process starts at a random partition, so one-shot producers in a shell loop spread
    over the partitions instead of all writing to partition 0.
    """

    __slots__ = ("_next",)

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        self._next = seed % (1 << 30)

    def next(self, partitions: int) -> int:
        """The partition for the next keyless batch."""
        chosen = self._next % partitions
        self._next += 1
        return chosen
