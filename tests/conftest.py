"""Fixtures: real database files in tmp_path; the CLI in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from tests.helpers import Invoker


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a fresh temporary directory (the file does not exist yet)."""
    return tmp_path / "test.db"


@pytest.fixture
def broker(db_path: Path) -> Iterator[Broker]:
    """A Broker on a new database file."""
    with Broker(db_path) as b:
        yield b


@pytest.fixture
def cli(db_path: Path) -> Invoker:
    """Call the CLI in-process against ``db_path``: ``cli("topic", "list")``."""
    return Invoker(db_path)
