"""The stdin batcher: batch sizes on fast input, commit points on slow input."""

import io
import os
import threading
import time

from pubsub.commands._input import RecordReader
from tests.helpers import wait_until


def test_splits_and_keeps_the_last_unterminated_record() -> None:
    reader = RecordReader(io.BytesIO(b"a\nb\n\nc"))
    assert [r for batch in reader for r in batch] == [b"a", b"b", b"", b"c"]
    assert list(RecordReader(io.BytesIO(b""))) == []
    assert [r for b in RecordReader(io.BytesIO(b"x\0y\0"), b"\0") for r in b] == [b"x", b"y"]


def test_fast_input_is_cut_into_capped_batches() -> None:
    data = b"".join(b"%d\n" % i for i in range(100_000))
    batches = list(RecordReader(io.BytesIO(data), max_records=16_384))
    assert [len(b) for b in batches[:-1]] == [16_384] * (len(batches) - 1)
    assert sum(len(b) for b in batches) == 100_000
    assert b"".join(r + b"\n" for b in batches for r in b) == data


def test_big_records_are_batched_by_bytes() -> None:
    line = b"x" * 999 + b"\n"
    batches = list(RecordReader(io.BytesIO(line * 10_000), max_bytes=1 << 20))
    assert all(len(b) * 1000 < (1 << 20) + (1 << 20) for b in batches)
    assert sum(len(b) for b in batches) == 10_000


def test_slow_pipe_hands_over_each_line_without_waiting_for_eof() -> None:
    read_fd, write_fd = os.pipe()
    got: list[tuple[float, list[bytes]]] = []

    def consume() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            for batch in RecordReader(stream):
                got.append((time.monotonic(), batch))

    thread = threading.Thread(target=consume)
    thread.start()
    sent = []
    for i in range(3):
        sent.append(time.monotonic())
        os.write(write_fd, b"line %d\n" % i)
        wait_until(
            lambda i=i: len(got) > i,
            timeout=10,
            what="a line on a quiet pipe to be handed over before EOF",
            interval=0.001,
        )
        assert len(got) == i + 1
    os.close(write_fd)
    thread.join(timeout=10)
    assert [batch for _, batch in got] == [[b"line 0"], [b"line 1"], [b"line 2"]]
