"""Helpers shared by the tests: running the CLI in-process and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from typer.testing import CliRunner

from pubsub import Broker
from pubsub.commands.app import make_app

#: The console script installed next to the interpreter running the tests.
PUBSUB = str(Path(sys.executable).with_name("pubsub"))

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """Check ``predicate`` until it returns something truthy (returned), or fail the test.

    The way tests wait for another process or thread to reach a state: on observable state,
    with a deadline, never a fixed sleep. ``what`` names the state in the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # the pause between two looks at the state, not a synchronisation


def cli_env(db_path: Path | None = None, **extra: str) -> dict[str, str]:
    """An environment for subprocess CLI calls: the venv on PATH, the database chosen."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PUBSUB_SYNC", None)
    env.pop("NO_COLOR", None)
    if db_path is not None:
        env["PUBSUB_DB"] = str(db_path)
    env.update(extra)
    return env


def run_cli(
    db_path: Path,
    *args: str,
    input: bytes | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``pubsub ARGS`` as a real process with real pipes; stdout/stderr as bytes."""
    return subprocess.run(
        [PUBSUB, *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env or cli_env(db_path),
        check=False,
    )


class Invoker:
    """Runs the CLI in-process through Typer's CliRunner (separate stdout and stderr)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.runner = CliRunner()

    def __call__(self, *args: str, input: bytes | str | None = None) -> InvokeResult:
        result = self.runner.invoke(
            make_app(), ["--db", str(self.db_path), *args], input=input, catch_exceptions=False
        )
        return InvokeResult(result.exit_code, result.stdout_bytes, result.stderr_bytes)


class InvokeResult:
    """Exit code, stdout and stderr of an in-process CLI call."""

    def __init__(self, exit_code: int, stdout: bytes, stderr: bytes) -> None:
        self.exit_code = exit_code
        self.stdout_bytes = stdout
        self.stderr_bytes = stderr

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (
            f"InvokeResult(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"
        )


def lines(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    """Split output into records (dropping the final terminator)."""
    if not data:
        return []
    assert data.endswith(sep), data[-20:]
    return data[: -len(sep)].split(sep)


def all_records(broker: Broker, topic: str) -> dict[int, list[tuple[int, bytes | None]]]:
    """Every record of a topic as {partition: [(offset, value), ...]}."""
    out: dict[int, list[tuple[int, bytes | None]]] = {}
    for partition, (start, end) in broker.watermarks(topic).items():
        recs = []
        offset = start
        while offset < end:
            batch = broker.fetch(topic, partition, offset, max_records=10_000)
            if not batch:
                break
            recs.extend((r.offset, r.value) for r in batch)
            offset = batch[-1].offset + 1
        out[partition] = recs
    return out


def default_interrupt_signals() -> None:
    """In a child, before exec: SIGINT and SIGQUIT back to their default disposition.

    A shell starts a background job (``make test &``) with both ignored, and an ignored
    disposition is inherited across exec: Python then installs no KeyboardInterrupt handler
    and a Ctrl-C test sees its child ignore the key. ``preexec_fn`` runs in the forked child,
    so this never touches the test process itself.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Terminal:
    """A real process on a pseudo-terminal (stdin, stdout and stderr), for what only a
    terminal gets: tables, the live dashboard, progress bars, key presses."""

    def __init__(self, args: list[str], env: dict[str, str], *, rows: int = 40, cols: int = 120):
        import fcntl
        import pty
        import struct
        import termios

        self.primary, replica = pty.openpty()
        fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(env, COLUMNS=str(cols), LINES=str(rows), TERM="xterm-256color")

        def controlling_terminal() -> None:
            # A session of its own with the pty as its terminal, so Ctrl-C sent through it
            # becomes SIGINT for the process, as in a real shell.
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            default_interrupt_signals()

        self.proc = subprocess.Popen(
            args,
            stdin=replica,
            stdout=replica,
            stderr=replica,
            env=env,
            preexec_fn=controlling_terminal,  # noqa: PLW1509 - setsid, an ioctl, two signal()s
        )
        os.close(replica)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 20.0, count: int = 1) -> bool:
        """Read output until ``needle`` was seen ``count`` times (False on timeout or EOF)."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while self.output.count(needle) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.primary], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.output += chunk
        return True

    def send(self, data: bytes) -> None:
        os.write(self.primary, data)

    def finish(self, timeout: float = 20.0) -> int:
        """Drain the output until the process exits; its exit code (killed and reaped if
        it does not exit in time, and the wait's TimeoutExpired raised)."""
        try:
            self.read_until(b"\0never\0", timeout=timeout)
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the process if it still runs, reap it and close the terminal (idempotent).

        Reaping matters: a child left running is reported by ``subprocess`` as a
        ResourceWarning, which fails whichever test happens to be running when it is
        collected.
        """
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        if self.primary >= 0:
            os.close(self.primary)
            self.primary = -1

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")
