"""Running worker processes for the fault suites and collecting what they acknowledged."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import PUBSUB, cli_env

WORKERS = str(Path(__file__).with_name("workers.py"))
ROOT = str(Path(__file__).parents[2])


class Worker:
    """A child process whose complete stdout lines are collected by a thread.

    A line cut short by a kill is not a line: only text up to the last newline counts. With
    ``keep_lines=False`` the lines are read and counted but not kept (a soak's producer
    prints millions that nobody checks).
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = None,
        stderr_path: Path | None = None,
        keep_lines: bool = True,
    ) -> None:
        self.keep_lines = keep_lines
        self.line_count = 0
        self.stderr_path = stderr_path
        stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env or dict(os.environ, PYTHONPATH=ROOT),
        )
        if stderr_path:
            stderr.close()  # type: ignore[union-attr]
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_at = self.last_line_at = 0.0  # monotonic times of "R" and the last line
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        pending = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                break
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            complete, pending = pending[: cut + 1], pending[cut + 1 :]
            for line in complete.decode().splitlines():
                if line == "R":
                    self.ready_at = time.monotonic()
                    self.ready.set()
                else:
                    self.line_count += 1
                    if self.keep_lines:
                        self.lines.append(line)
                    self.last_line_at = time.monotonic()
        self.ready.set()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def join(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe to a killed reader
                    stream.close()
        return code

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")


def python_worker(
    mode: str, *args: object, stderr_path: Path | None = None, keep_lines: bool = True
) -> Worker:
    return Worker(
        [sys.executable, WORKERS, mode, *map(str, args)],
        stderr_path=stderr_path,
        keep_lines=keep_lines,
    )


class CliProducer:
    """``pubsub produce TOPIC --print-offsets`` fed lines by a thread; acks read back in order.

    The command prints PARTITION<TAB>OFFSET for each record once its batch is committed, in
    input order, so output line i acknowledges input line i.
    """

    def __init__(self, db: Path, topic: str, name: str, stderr_path: Path) -> None:
        self.values: list[str] = []
        self.worker = Worker(
            [PUBSUB, "produce", topic, "--print-offsets"],
            env=cli_env(db),
            stdin=subprocess.PIPE,
            stderr_path=stderr_path,
        )
        self.worker.ready.set()
        self.name = name
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        stdin = self.worker.proc.stdin
        assert stdin is not None
        seq = 0
        try:
            while True:
                burst = [f"{self.name}-{seq + i}" for i in range(1 + seq % 97)]
                self.values.extend(burst)
                stdin.write(("\n".join(burst) + "\n").encode())
                stdin.flush()
                seq += len(burst)
                time.sleep(0.002)  # pacing the input, not a synchronisation
        except (BrokenPipeError, OSError, ValueError):
            return  # killed, or the pipe closed after it ended

    def acks(self) -> list[tuple[int, int, str]]:
        """(partition, offset, value) of every acknowledged record."""
        out = []
        for i, line in enumerate(self.worker.lines):
            partition, offset = line.split("\t")
            out.append((int(partition), int(offset), self.values[i]))
        return out
