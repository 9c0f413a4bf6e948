"""The assignor: balanced, sticky, subscription-aware placement (pubsub/assignor.py)."""

import pytest

from pubsub.assignor import assign


def keys(n: int) -> list[tuple[tuple[int, int], frozenset[str]]]:
    return [((1, p), frozenset({"a", "b", "c", "d"})) for p in range(n)]


@pytest.mark.parametrize(("n", "members"), [(6, 3), (7, 3), (2, 4), (12, 5), (1, 1), (0, 2)])
def test_assign_is_balanced_and_complete(n: int, members: int) -> None:
    names = ["a", "b", "c", "d"][:members]
    result = assign(keys(n), names, {})
    assert sorted(result) == [(1, p) for p in range(n)]
    counts = [list(result.values()).count(name) for name in names]
    assert max(counts) - min(counts) <= 1


def test_assign_is_sticky() -> None:
    first = assign(keys(6), ["a", "b"], {})
    second = assign(keys(6), ["a", "b", "c"], first)
    moved = [k for k in first if first[k] != second[k]]
    assert len(moved) == 2  # only what c needs
    assert all(second[k] == "c" for k in moved)
    third = assign(keys(6), ["a", "c"], second)  # b left: only b's partitions move
    assert all(third[k] == second[k] for k in second if second[k] != "b")


def test_assign_respects_subscriptions() -> None:
    partitions = [
        ((1, 0), frozenset({"a"})),
        ((1, 1), frozenset({"a"})),
        ((2, 0), frozenset({"b"})),
    ]
    assert assign(partitions, ["a", "b"], {}) == {(1, 0): "a", (1, 1): "a", (2, 0): "b"}
    assert assign(partitions, [], {}) == {}


def test_assign_gives_narrow_subscribers_their_share() -> None:
    partitions = [((1, p), frozenset({"A"})) for p in range(4)] + [
        ((2, p), frozenset({"A", "B"})) for p in range(2)
    ]
    fresh = assign(partitions, ["A", "B"], {})
    assert sorted(fresh.values()).count("B") == 2
    sticky = assign(partitions, ["A", "B"], dict.fromkeys([k for k, _ in partitions], "A"))
    assert [k for k, m in sticky.items() if m == "B"] == [(2, 0), (2, 1)]
