"""Counts in messages: "1 record", "2 records", never "1 records" or "record(s)"."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` with its noun, thousands separated: ``counted(1, "record")`` is "1 record",
    ``counted(1000, "record")`` is "1,000 records"; ``plural`` for an irregular noun
    (``counted(2, "entry", "entries")``)."""
    noun = singular if count == 1 else (plural if plural is not None else singular + "s")
    return f"{count:,} {noun}"
