"""Reading records from a byte stream (stdin) in batches sized by the input's pace.

Fast input (a file, a busy pipe) is cut into large batches, so thousands of records share one
transaction. Slow input (``tail -F``) is committed as soon as the pipe has nothing more to give:
after each read the reader checks whether more bytes are already waiting, and if none are
(within ``linger`` seconds, 0 by default) it hands over what it has. While a batch is being
committed, new input queues up in the pipe, so the next batch grows by itself under load.
"""

from __future__ import annotations

import io
import os
import select
import time
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 20
DEFAULT_MAX_RECORDS = 16384
DEFAULT_MAX_BYTES = 4 << 20
#: Batches (and reads) while the disk is low on space: a transaction of at most 128 KiB.
LOW_SPACE_MAX_BYTES = 64 << 10


class RecordReader:
    """Iterate over batches (lists) of records split from ``stream`` at ``delimiter``.

    A batch holds at most ``max_records`` records, and is handed over once it reaches
    ``max_bytes`` (so it exceeds that by less than one read). A final record without a
    delimiter counts. ``interrupted`` is set when Ctrl-C stopped the
    reading: the complete records read so far are still handed over, so the caller can commit
    them before exiting.
    """

    def __init__(
        self,
        stream: BinaryIO,
        delimiter: bytes = b"\n",
        *,
        linger: float = 0.0,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._stream = stream
        self._delimiter = delimiter
        self._linger = linger
        self._max_records = max_records
        #: A batch is handed over once it holds this many bytes (may be changed between
        #: batches: ``pubsub produce`` makes it smaller when the disk is low on space).
        self.max_bytes = max_bytes
        #: Bytes asked for per read: a batch exceeds ``max_bytes`` by less than this.
        self.chunk_size = CHUNK
        self.interrupted = False
        #: Bytes taken from the stream so far (for a progress bar).
        self.bytes_read = 0
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, AttributeError, io.UnsupportedOperation, ValueError):
            self._fd = None
        self._poller: select.poll | None = None
        if self._fd is not None:
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def _read(self) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, self.chunk_size)
        read1 = getattr(self._stream, "read1", None)
        if read1 is not None:
            return bytes(read1(self.chunk_size))
        return bytes(self._stream.read(self.chunk_size))

    def _ready(self, timeout: float) -> bool:
        """True if a read would not block (input waiting, or end of file)."""
        if self._poller is None:
            return True
        return bool(self._poller.poll(max(0, int(timeout * 1000))))

    def __iter__(self) -> Iterator[list[bytes]]:
        delimiter = self._delimiter
        partial = b""
        pending: list[bytes] = []
        pending_bytes = 0
        flush_at = 0.0
        try:
            while True:
                if pending:
                    full = len(pending) >= self._max_records or pending_bytes >= self.max_bytes
                    wait = max(0.0, flush_at - time.monotonic())
                    if full or not self._ready(wait):
                        yield pending
                        pending = []
                        pending_bytes = 0
                        continue
                chunk = self._read()
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                data = partial + chunk if partial else chunk
                parts = data.split(delimiter)
                partial = parts.pop()
                if parts:
                    if not pending:
                        flush_at = time.monotonic() + self._linger
                    pending.extend(parts)
                    pending_bytes += len(data) - len(partial)
                    # One read may hold far more than a batch (1 MiB of 2-byte lines): cap it.
                    limit = self._max_records
                    while len(pending) > limit:
                        yield pending[:limit]
                        pending = pending[limit:]
                        pending_bytes = sum(map(len, pending)) + len(pending)
                        flush_at = time.monotonic() + self._linger
        except KeyboardInterrupt:
            self.interrupted = True
            partial = b""  # an unterminated record at Ctrl-C is not a record
        if partial:
            pending.append(partial)
        if pending:
            yield pending
