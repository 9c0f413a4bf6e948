"""``pubsub serve`` as a real process for the tests, and small raw-protocol helpers."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pubsub.kafka.wire import share
from pubsub.kafka.wire.codec import (
    RequestHeader,
    encode_request,
    request_class,
    response_class,
)
from tests.helpers import PUBSUB, cli_env

_LISTENING = re.compile(rb"listening on (\S+):(\d+)")


class ServeProcess:
    """``pubsub --db DB serve --listen 127.0.0.1:PORT ARGS``; port 0 at the first start, the
    same port after a restart. ``bootstrap`` is its address."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.args = args
        self.env = env or {}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = b""
        self._reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        argv = [PUBSUB, "--db", str(self.db), "serve", "--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [*argv, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=cli_env(self.db, **self.env),
        )
        listening = threading.Event()
        proc = self.proc

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.stderr += line
                found = _LISTENING.search(line)
                if found:
                    self.port = int(found.group(2))
                    listening.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not listening.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pubsub serve did not start: {self.stderr.decode()}")

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(30)
            self._finish()

    def _finish(self) -> None:
        assert self.proc is not None
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._finish()
        return code

    def restart(self) -> None:
        self.kill()
        self.start()

    def errors(self) -> str:
        """What the server wrote on stderr besides its start-up line."""
        return "\n".join(
            line
            for line in self.stderr.decode(errors="replace").splitlines()
            if "listening on" not in line
        )


def connect(bootstrap: str, timeout: float = 10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def request(
    sock: socket.socket, api_key: int, version: int, correlation_id: int = 1, **fields: Any
) -> Any:
    """Send a request of ``api_key`` at ``version``; the decoded response."""
    header = RequestHeader(api_key, version, correlation_id, "pubsub-tests")
    sock.sendall(encode_request(header, request_class(api_key)(**fields)))
    size, correlation = read_response_head(sock)
    assert correlation == correlation_id
    body = read_exactly(sock, size - 4)
    cls = response_class(api_key)
    flexible = cls.flexible_version_q(version) and api_key != 18
    if flexible:
        body = body[1:]  # the response header's (empty) tagged fields
    return cls.decode(body, version=version)


def read_response_head(sock: socket.socket) -> tuple[int, int]:
    size, correlation = struct.unpack(">ii", read_exactly(sock, 8))
    return size, correlation


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def call(sock: socket.socket, key: int, version: int, body: dict[str, Any], cid: int = 1) -> Any:
    """Send a share-group request (a dict, see :mod:`pubsub.kafka.wire.share`); the decoded
    response, a dict."""
    sock.sendall(encode_request(RequestHeader(key, version, cid, "raw"), body))
    size, correlation = read_response_head(sock)
    assert correlation == cid
    data = read_exactly(sock, size - 4)
    assert data[0] == 0  # the response header's tagged fields
    message, end = share.decode_body(key, version, False, data, 1)
    assert end == len(data)
    return message
