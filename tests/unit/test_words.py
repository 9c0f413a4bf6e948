"""``pubsub.words``: a count and its noun, singular or plural."""

import pytest

from pubsub.words import counted


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 records"), (1, "1 record"), (2, "2 records"), (1_000, "1,000 records")],
)
def test_counted(count: int, expected: str) -> None:
    assert counted(count, "record") == expected


def test_counted_with_an_irregular_plural() -> None:
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"
