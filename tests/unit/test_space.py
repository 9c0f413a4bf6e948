"""The space reserve and the checkpoint interval on a file system low on space."""

import os
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import connection, files
from pubsub.db.files import RESERVE_BYTES, release_reserve, reserve_size, restore_reserve


def test_reserve_is_released_in_part_or_whole_and_put_back(db_path: Path) -> None:
    Broker(db_path).close()
    path = str(db_path)
    assert reserve_size(path) == RESERVE_BYTES
    assert release_reserve(path, 256 * 1024) == 256 * 1024
    assert reserve_size(path) == RESERVE_BYTES - 256 * 1024
    assert restore_reserve(path)  # the disk has room: the missing part is allocated again
    assert reserve_size(path) == RESERVE_BYTES
    assert os.stat(f"{path}-reserve").st_blocks * 512 >= RESERVE_BYTES  # real blocks
    assert release_reserve(path) == RESERVE_BYTES
    assert not os.path.exists(f"{path}-reserve")
    assert release_reserve(path) == 0
    assert restore_reserve(path)
    assert reserve_size(path) == RESERVE_BYTES
    assert os.stat(f"{path}-reserve").st_mode & 0o777 == 0o600  # the database's mode


def test_reserve_comes_back_only_with_room_to_spare(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Broker(db_path).close()
    path = str(db_path)
    release_reserve(path, 512 * 1024)
    monkeypatch.setattr(files, "free_bytes", lambda _path: 512 * 1024 + RESERVE_BYTES - 1)
    assert not restore_reserve(path)
    assert reserve_size(path) == RESERVE_BYTES - 512 * 1024
    monkeypatch.setattr(files, "free_bytes", lambda _path: 512 * 1024 + RESERVE_BYTES)
    assert restore_reserve(path)
    assert reserve_size(path) == RESERVE_BYTES


@pytest.mark.parametrize(
    ("free", "pages", "limit"),
    [
        (files.LOW_SPACE_BYTES - 1, files.LOW_SPACE_WAL_PAGES, connection.LOW_SPACE_WAL_SIZE_LIMIT),
        (files.LOW_SPACE_BYTES, files.DEFAULT_WAL_PAGES, connection.WAL_SIZE_LIMIT),
    ],
)
def test_checkpoints_run_often_when_low_on_space(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, pages: int, limit: int
) -> None:
    monkeypatch.setattr(connection, "free_bytes", lambda _path: free)
    monkeypatch.setattr("pubsub.writer.low_on_space", lambda _path, floor: free < floor)
    with Broker(db_path) as broker:
        conn = broker.store.connection
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == pages
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == limit
        assert broker.low_on_space == (pages == files.LOW_SPACE_WAL_PAGES)


def test_a_producer_notices_the_disk_filling(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        conn = broker.store.connection
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == files.DEFAULT_WAL_PAGES
        monkeypatch.setattr(connection, "free_bytes", lambda _path: 1 << 20)
        for _ in range(5):  # 5 MiB: the free space is looked at again after 4 MiB
            broker.produce_batch("t", [b"x" * 1024] * 1024)
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 64
        assert broker.low_on_space
