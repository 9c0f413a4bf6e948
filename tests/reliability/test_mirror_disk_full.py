"""A mirror into a file on a disk that fills up: it says so, keeps the source's records
waiting (nothing lost, nothing half-written), and goes on by itself once space is freed."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from pubsub.broker import Broker
from pubsub.records import Message
from tests.helpers import PUBSUB, wait_until
from tests.mirror.support import assert_mirrored, consume_json, mirror_env
from tests.reliability.test_disk_full import small_disk, tmpfs_available

pytestmark = pytest.mark.reliability


def test_a_full_destination_disk_holds_the_mirror_until_space_is_freed(tmp_path: Path) -> None:
    why = tmpfs_available(tmp_path)
    if why is not None:
        pytest.skip(f"a small disk needs a tmpfs mount, which is not permitted here ({why})")
    source = tmp_path / "source.db"
    with Broker(source) as broker:
        broker.create_topic("big", 2)
        broker.produce_batch(
            "big",
            [Message(os.urandom(1000), key=str(i).encode(), partition=i % 2) for i in range(3000)],
        )
    disk = tmp_path / "disk"
    with small_disk(disk, 8 * 1024 * 1024):
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (6 * 1024 * 1024))  # 2 MiB left: not enough for 3 MB
        dest = disk / "dest.db"
        log = tmp_path / "mirror.err"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [PUBSUB, "mirror", str(source), str(dest), "--name", "to-small-disk",
                 "--batch-bytes", "65536"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=mirror_env(),
            )  # fmt: skip
        try:
            wait_until(
                lambda: b"destination full" in log.read_bytes(),
                timeout=120,
                interval=0.1,
                what="the mirror to report the full disk",
            )
            assert proc.poll() is None, log.read_text()  # it waits; it does not give up
            assert b"Traceback" not in log.read_bytes()
            filler.unlink()
            wait_until(
                lambda: len(consume_json(dest, "big")) == 3000,
                timeout=180,
                interval=0.5,
                what="every record after space was freed",
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        assert code == 0, log.read_text()
        assert_mirrored(consume_json(source, "big"), consume_json(dest, "big"))
        with Broker(dest) as broker:
            assert broker.check(quick=True) == []
