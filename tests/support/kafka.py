"""A real single-node Apache Kafka broker for the tests, and Kafka's own command-line tools.

``KafkaBroker(directory)`` runs Kafka in KRaft combined mode (broker and controller in one
JVM) on two free loopback ports, with its data, configuration and log in ``directory``:

    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()                  # format (first time), launch, wait for a metadata answer
    broker.bootstrap                # "127.0.0.1:PORT"
    broker.pause(); broker.resume() # SIGSTOP / SIGCONT: a broker that hangs
    broker.restart()                # same ports, same data
    broker.stop()                   # SIGTERM, then SIGKILL if it does not exit in time

``kafka_tool(TOPIC_COMMAND, "--bootstrap-server", b, "--list")`` runs one of Kafka's tools.
The jars come from ``tests/support/kafka_jars.py``.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

from tests.support.cache import FetchError
from tests.support.kafka_jars import KAFKA_DIR, TOOLS_LOG4J, ClassArchive, java_command

BROKER_LOG4J = KAFKA_DIR / "log4j2-broker.properties"

# Kafka 4.x class names of the tools (what bin/kafka-*.sh run).
TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
CONFIG_COMMAND = "org.apache.kafka.tools.ConfigCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
CONSOLE_SHARE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleShareConsumer"
CONSUMER_GROUPS_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
SHARE_GROUPS_COMMAND = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
TRANSACTIONS_COMMAND = "org.apache.kafka.tools.TransactionsCommand"
GET_OFFSET_SHELL = "org.apache.kafka.tools.GetOffsetShell"
FEATURE_COMMAND = "org.apache.kafka.tools.FeatureCommand"
STORAGE_TOOL = "kafka.tools.StorageTool"
KAFKA_MAIN = "kafka.Kafka"

#: The tools are short-lived JVMs: the client compiler and the serial collector start them
#: about a third faster than the defaults (and a class-data archive halves the rest).
TOOL_JVM_OPTIONS = (
    "-Xmx256m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
    f"-Dlog4j2.configurationFile={TOOLS_LOG4J}",
)

#: Broker and controller in one JVM on loopback; one replica of everything; the internal
#: topics small (their defaults of 50 partitions cost seconds at first use on 2 cores).
BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    # Members of consumer (KIP-848) and share groups learn their assignment on a heartbeat:
    # Kafka's 5 s interval would make every test wait that long for its first record.
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.heartbeat.interval.ms": "500",
    "group.share.min.heartbeat.interval.ms": "500",
    "group.share.heartbeat.interval.ms": "500",
    # The default (128 MiB) is allocated whole by the log cleaner: too much for a small heap.
    "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
    "auto.create.topics.enable": "false",
}

DEFAULT_HEAP = "512m"
_log = logging.getLogger(__name__)


class KafkaError(RuntimeError):
    """The broker could not be started, or a Kafka tool failed."""


class KafkaTarget(Protocol):
    """What a test needs to talk to a broker: its bootstrap address."""

    @property
    def bootstrap(self) -> str: ...


class ExternalKafka:
    """A broker someone else runs (``PUBSUB_TEST_KAFKA=HOST:PORT``): an address, no process."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def check(self, timeout: float = 30.0) -> None:
        """Raise KafkaError unless the broker answers a metadata request within ``timeout``."""
        error = metadata_round_trip(self._bootstrap, timeout)
        if error is not None:
            raise KafkaError(
                f"PUBSUB_TEST_KAFKA={self._bootstrap}: no metadata answer in {timeout:.0f} s "
                f"({error})"
            )

    def __repr__(self) -> str:
        return f"ExternalKafka({self._bootstrap!r})"


def random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes one (base64url of 16 random bytes),
    without starting a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids these: they read as a command-line flag
            return text


def metadata_round_trip(
    bootstrap: str, timeout: float, *, alive: Callable[[], bool] = lambda: True
) -> str | None:
    """Ask for metadata until a broker answers (None) or ``timeout`` passes (the last error).

    A real client round trip: a listening socket alone does not mean the broker serves.
    Stops early when ``alive()`` turns false.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 250,
            # librdkafka logs each refused connection; keep that off the test's output.
            "logger": logging.getLogger(f"{__name__}.readiness"),
        }
    )
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while alive():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return last_error
        try:
            metadata = admin.list_topics(timeout=min(1.0, remaining))
        except KafkaException as e:
            last_error = str(e)
            continue
        if metadata.brokers:
            return None
        last_error = "metadata names no broker"
    return "the broker exited"


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held together while choosing, so distinct)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _parent_death_wrapper() -> list[str]:
    # If the test process dies without stopping the broker (SIGKILL, a crash), the kernel
    # kills the JVM too instead of leaving it running on a shared machine.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class KafkaBroker:
    """A single-node Kafka broker (KRaft, broker+controller) owned by the tests.

    ``properties`` are added to (and override) the defaults; ``auto_create_topics`` sets
    ``auto.create.topics.enable``. Not thread-safe: start and stop it from one thread.
    """

    def __init__(
        self,
        directory: Path,
        *,
        auto_create_topics: bool = False,
        properties: Mapping[str, str] | None = None,
        heap: str = DEFAULT_HEAP,
        ready_timeout: float = 120.0,
    ) -> None:
        self.directory = Path(directory)
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "broker.log"
        self.jvm_output_path = self.directory / "jvm.out"
        self.properties_path = self.directory / "server.properties"
        self.heap = heap
        self.ready_timeout = ready_timeout
        self._overrides = dict(properties or {})
        self._overrides.setdefault("auto.create.topics.enable", str(auto_create_topics).lower())
        self.cluster_id: str | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._archive: ClassArchive | None = None
        self._paused = False
        self._atexit_registered = False
        #: Seconds the last start() took (format included), for the record.
        self.last_start_seconds: float | None = None

    # -- addresses and state -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener (an address, never ``localhost``)."""
        if self.port is None:
            raise KafkaError("the broker was never started: it has no port yet")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def rss_kib(self) -> int:
        """The JVM's resident set size in KiB (VmRSS from /proc)."""
        pid = self.pid
        if pid is None:
            raise KafkaError("the broker is not running")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise KafkaError(f"no VmRSS in /proc/{pid}/status")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log and of the JVM's own output."""
        parts = []
        for path in (self.log_path, self.jvm_output_path):
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts) or "(no broker output)"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Format the storage (first start only), launch the JVM, wait until it answers.

        A later start reuses the ports and the data. Raises KafkaError, with the log's tail,
        if the broker exits or does not answer a metadata request within ``ready_timeout``.
        """
        if self.running:
            raise KafkaError(f"the broker is already running (pid {self.pid})")
        began = time.monotonic()
        if self.cluster_id is None:
            self._first_start()
        else:
            self._launch()
            self._wait_ready()
        self.last_start_seconds = time.monotonic() - began

    def _first_start(self) -> None:
        # Ports are chosen free but another process may take one before the JVM binds it:
        # then choose again (only on the first start: a restart must keep its address).
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.port, self.controller_port = _free_ports(2)
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            self._write_properties()
            cluster_id = random_cluster_id()
            self._format(cluster_id)
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch()
            try:
                self._wait_ready()
            except KafkaError:
                if attempt < 2 and "BindException" in self._log_since(log_size):
                    self.kill()
                    continue
                raise
            self.cluster_id = cluster_id
            return

    def _write_properties(self) -> None:
        props = dict(BASE_PROPERTIES)
        props.update(
            {
                "listeners": (
                    f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
                ),
                "advertised.listeners": (
                    f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
                ),
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
                "log.dirs": str(self.data_dir),
            }
        )
        props.update(self._overrides)
        text = "".join(f"{key}={value}\n" for key, value in sorted(props.items()))
        self.properties_path.write_text(text)

    def _format(self, cluster_id: str) -> None:
        args = ("format", "--standalone", "--cluster-id", cluster_id)
        done = kafka_tool(STORAGE_TOOL, *args, "--config", str(self.properties_path), check=False)
        if done.returncode != 0:
            raise KafkaError(
                f"formatting the broker's storage failed (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )

    def _launch(self) -> None:
        self._archive = ClassArchive(KAFKA_MAIN)
        cmd = java_command(
            KAFKA_MAIN,
            str(self.properties_path),
            jvm_options=(
                *self._archive.options(),
                f"-Xmx{self.heap}",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={BROKER_LOG4J}",
                f"-Dkafka.logs.dir={self.directory}",
            ),
        )
        with self.jvm_output_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [*_parent_death_wrapper(), *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self._paused = False
        if not self._atexit_registered:
            atexit.register(self.kill)
            self._atexit_registered = True

    def _wait_ready(self) -> None:
        """Wait (bounded) until the broker answers a real client's metadata request."""
        proc = self._proc
        assert proc is not None
        error = metadata_round_trip(
            self.bootstrap, self.ready_timeout, alive=lambda: proc.poll() is None
        )
        if error is None:
            return
        code = proc.poll()
        if code is not None:
            self._exited(cleanly=False)
            raise KafkaError(
                f"the Kafka broker exited with code {code} while starting\n{self.log_tail()}"
            )
        self.kill()
        raise KafkaError(
            f"the Kafka broker did not answer on {self.bootstrap} within "
            f"{self.ready_timeout:.0f} s ({error})\n{self.log_tail()}"
        )

    def _log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it has not exited within ``timeout``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if self._paused:
            self.resume()
        if self._archive is not None and self._archive.writing:
            timeout += 180  # writing the class-data archive at exit takes a while under load
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning(
                "Kafka broker pid %s ignored SIGTERM for %.0f s: killed", proc.pid, timeout
            )
            proc.kill()
            proc.wait(30)
            self._exited(cleanly=False)
            return
        self._exited(cleanly=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would (the data is kept; the next start recovers it)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(30)
        self._paused = False
        self._exited(cleanly=False)

    def _exited(self, *, cleanly: bool) -> None:
        if self._archive is not None:
            self._archive.finished(cleanly=cleanly)

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its connections (a hang).

        Returns once every thread of the JVM is stopped: a thread busy on the other core
        may serve a request or two after the signal is sent.
        """
        proc = self._require_running()
        proc.send_signal(signal.SIGSTOP)
        self._paused = True
        self._wait_threads(proc.pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT after ``pause()``; returns once the JVM's threads run again."""
        proc = self._require_running()
        proc.send_signal(signal.SIGCONT)
        self._paused = False
        self._wait_threads(proc.pid, stopped=False)

    @staticmethod
    def _wait_threads(pid: int, *, stopped: bool, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = set()
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    # The state follows the command name, which may hold spaces and ")".
                    states.add(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a thread that just ended
            if (states <= {"T", "t"}) if stopped else ("T" not in states):
                return
            if time.monotonic() > deadline:
                raise KafkaError(f"pid {pid}: threads still in states {sorted(states)}")
            time.sleep(0.005)  # the pause between looks of a wait with a deadline

    def restart(self) -> None:
        """stop() then start(): same ports, same log directory, data kept."""
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Resume a paused broker, start a stopped one: leave it as the next test expects."""
        if self.paused:
            self.resume()
        if not self.running:
            self.start()

    def _require_running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise KafkaError("the broker is not running")
        return proc

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap if self.port is not None else "not started"
        return f"KafkaBroker({where}, pid={self.pid}, dir={str(self.directory)!r})"


# -- Kafka's command-line tools --------------------------------------------------------


def kafka_tool(
    main_class: str,
    *args: str,
    input: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's tools (``TOPIC_COMMAND``...) from the fetched jars.

    Returns the finished process (stdout is the tool's data; its log goes to stderr at WARN).
    With ``check``, a non-zero exit raises KafkaError showing both streams.
    """
    archive = ClassArchive(main_class)
    cmd = java_command(main_class, *args, jvm_options=(*archive.options(), *TOOL_JVM_OPTIONS))
    try:
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        archive.finished(cleanly=False)
        raise KafkaError(f"{main_class} {' '.join(args)} did not finish in {timeout:.0f} s") from e
    archive.finished(cleanly=done.returncode >= 0)
    if check and done.returncode != 0:
        raise KafkaError(
            f"{main_class} {' '.join(args)} exited with {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
    return done


def topics(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kafka-topics --bootstrap-server BOOTSTRAP ARGS``."""
    return kafka_tool(TOPIC_COMMAND, "--bootstrap-server", bootstrap, *args)


def consumer_groups(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kafka-consumer-groups --bootstrap-server BOOTSTRAP ARGS``."""
    return kafka_tool(CONSUMER_GROUPS_COMMAND, "--bootstrap-server", bootstrap, *args)


def console_produce(
    bootstrap: str, topic: str, lines: Iterable[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``kafka-console-producer``: one record per line of ``lines`` (acks=all by default)."""
    text = "".join(f"{line}\n" for line in lines)
    return kafka_tool(
        CONSOLE_PRODUCER, "--bootstrap-server", bootstrap, "--topic", topic, *args, input=text
    )


def console_consume(
    bootstrap: str,
    topic: str,
    *args: str,
    max_messages: int,
    timeout_ms: int = 30_000,
    from_beginning: bool = True,
) -> list[str]:
    """``kafka-console-consumer``: the values of the first ``max_messages`` records, one per
    line (fewer if ``timeout_ms`` passes without a record)."""
    start = ["--from-beginning"] if from_beginning else []
    done = kafka_tool(
        CONSOLE_CONSUMER,
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        *start,
        "--max-messages",
        str(max_messages),
        "--timeout-ms",
        str(timeout_ms),
        *args,
        timeout=timeout_ms / 1000 + 60,
        check=False,
    )
    # Fewer records than max_messages when timeout_ms passes is not an error here (the tool
    # logs a TimeoutException; 4.4 exits 0 then, tolerate a non-zero exit as well).
    if done.returncode != 0 and "TimeoutException" not in done.stderr:
        raise KafkaError(f"console consumer exited with {done.returncode}\n{done.stderr}")
    return done.stdout.splitlines()


__all__ = [
    "CONFIG_COMMAND",
    "CONSOLE_CONSUMER",
    "CONSOLE_PRODUCER",
    "CONSOLE_SHARE_CONSUMER",
    "CONSUMER_GROUPS_COMMAND",
    "FEATURE_COMMAND",
    "GET_OFFSET_SHELL",
    "SHARE_GROUPS_COMMAND",
    "TOPIC_COMMAND",
    "TRANSACTIONS_COMMAND",
    "ExternalKafka",
    "FetchError",
    "KafkaBroker",
    "KafkaError",
    "KafkaTarget",
    "console_consume",
    "console_produce",
    "consumer_groups",
    "kafka_tool",
    "topics",
]
