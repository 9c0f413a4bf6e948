"""The assignor: which member of a group gets which partition (a pure function).

Kept apart from :mod:`pubsub.membership`, which stores leases and moves ownership, so that
the placement rule can be read, tested and replaced on its own.
"""

from collections.abc import Iterable, Mapping, Sequence

from pubsub.db.membership import PartitionKey

__all__ = ["assign"]


def assign(
    partitions: Sequence[tuple[PartitionKey, frozenset[str]]],
    members: Iterable[str],
    previous: Mapping[PartitionKey, str | None],
) -> dict[PartitionKey, str]:
    """Give each partition to one of its eligible members: balanced, then sticky.

    The most constrained partitions (fewest eligible members) are placed first, each with the
    least-loaded eligible member, so members with narrow subscriptions still get their share;
    when every member subscribes to everything, counts differ by at most one. Among the
    least-loaded candidates the partition's previous member wins, so a rebalance moves only
    what it must.
    """
    names = sorted(set(members))
    counts = dict.fromkeys(names, 0)
    result: dict[PartitionKey, str] = {}
    for key, eligible in sorted(partitions, key=lambda item: (len(item[1]), item[0])):
        candidates = [name for name in names if name in eligible]
        if not candidates:
            continue
        fewest = min(counts[name] for name in candidates)
        least = [name for name in candidates if counts[name] == fewest]
        before = previous.get(key)
        chosen = before if before in least else least[0]
        assert chosen is not None
        counts[chosen] += 1
        result[key] = chosen
    return result
