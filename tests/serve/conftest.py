"""Fixtures: a ``pubsub serve`` process over a fresh database file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.support import ServeProcess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    """A running ``pubsub serve`` over ``tmp_path/serve.db`` (killed after the test)."""
    server = ServeProcess(tmp_path / "serve.db")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def serve_auto(tmp_path: Path) -> Iterator[ServeProcess]:
    """The same with ``--auto-create-topics``."""
    server = ServeProcess(tmp_path / "serve.db", "--auto-create-topics")
    server.start()
    try:
        yield server
    finally:
        server.kill()
