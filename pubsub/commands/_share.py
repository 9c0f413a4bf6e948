"""``consume --share GROUP``: a share-group member (queue mode, Kafka's share groups).

Without --exec each record is written to stdout and accepted once written and flushed. With
--exec one process runs up to ``--workers`` commands at once, from a pool of threads fed by
one :class:`~pubsub.share_consumer.ShareConsumer` (one connection, one member): the main
thread acquires as many records as there are free workers — committing the finished ones'
acknowledgements in the same transaction — and renews the locks of the records still
running. A command that exits 0 accepts its record; one that fails releases it after the
backoff (doubled per delivery; the lock is kept and renewed meanwhile), and on its last
delivery (``--max-deliveries``) rejects it: to ``--dead-letter`` with headers saying why, or
archived. Without -f the member exits 0 once nothing is left it could acquire.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from pubsub.commands._common import fail, human_ms, silence_stdout, warn
from pubsub.errors import ShareFencedError

if TYPE_CHECKING:
    from pubsub.broker import Broker
    from pubsub.records import Record, ShareRecord
    from pubsub.share_consumer import ShareConsumer

#: Accepts of finished commands wait at most this long (s) for an acquisition to ride on.
ACK_DELAY = 0.05

#: How long a command gets after SIGTERM (Ctrl-C, --exec-timeout) before SIGKILL (s).
EXEC_GRACE = 10.0


class ShareOptions:
    """What ``consume --share`` was asked to do."""

    def __init__(
        self,
        *,
        group: str,
        lock_timeout: float,
        max_deliveries: int,
        dead_letter: str | None,
        reset: str,
        follow: bool,
        max_messages: int | None,
        timeout: float | None,
        batch: int | None,
        workers: int,
        exec_command: str | None,
        exec_timeout_ms: int | None,
        backoff: float,
    ) -> None:
        self.group = group
        self.lock_timeout = lock_timeout
        self.max_deliveries = max_deliveries
        self.dead_letter = dead_letter
        self.reset = reset
        self.follow = follow
        self.max_messages = max_messages
        self.timeout = timeout
        self.batch = batch
        self.workers = workers
        self.exec_command = exec_command
        self.exec_timeout_ms = exec_timeout_ms
        self.backoff = backoff


def check_share_options(
    group: str | None,
    partitions: list[int] | None,
    offset: str | None,
    until: str | None,
    workers: int,
    exec_command: str | None,
) -> None:
    """Refuse what a share group does not combine with (exit 2)."""
    if group is not None:
        fail(
            "--share and --group do not combine: a member is in a share group or a consumer group",
            "use --share GROUP for a queue (records shared one by one), --group GROUP for a "
            "log read in order per partition",
        )
    if partitions:
        fail("--share reads every partition of each topic", "drop -p")
    if offset is not None or until is not None:
        fail(
            "a share group starts where the group is, not at -o/--until",
            "drop -o/--until; --reset earliest|latest picks where a new share group starts",
        )
    if workers > 1 and exec_command is None:
        fail("--workers needs --exec", "add --exec CMD: each worker runs the command")


def run(
    broker: "Broker",
    topics: list[str],
    options: ShareOptions,
    formatter: "Callable[[list[Record]], bytes]",
) -> None:
    """Consume ``topics`` as a member of the share group (see the module docstring)."""
    from pubsub.share_consumer import ShareConsumer

    batch = options.batch or (options.workers if options.exec_command else 500)
    consumer = ShareConsumer(
        broker,
        topics,
        group=options.group,
        lock_timeout=options.lock_timeout,
        max_deliveries=options.max_deliveries,
        dead_letter=options.dead_letter,
        max_poll_records=batch,
        on_warning=warn,
        reset="latest" if options.reset == "latest" else "earliest",
    )
    try:
        if options.exec_command is None:
            _write(consumer, options, formatter, batch)
        else:
            _Pool(consumer, options).run()
    finally:
        consumer.close()


def _write(
    consumer: "ShareConsumer",
    options: ShareOptions,
    formatter: "Callable[[list[Record]], bytes]",
    batch: int,
) -> None:
    out = sys.stdout.buffer
    remaining = options.max_messages
    idle_since = time.monotonic()
    while remaining is None or remaining > 0:
        limit = batch if remaining is None else min(batch, remaining)
        wait_for = 0.0
        if options.follow:
            wait_for = 1.0
            if options.timeout is not None:
                wait_for = min(wait_for, options.timeout - (time.monotonic() - idle_since))
                if wait_for <= 0:
                    return
        records = consumer.acquire(wait_for, limit)
        if not records:
            if options.follow:
                continue
            return
        idle_since = time.monotonic()
        try:
            out.write(formatter([r.record for r in records]))
            out.flush()
        except BrokenPipeError:
            silence_stdout()  # the reader is gone: these records are released at close
            raise
        except OSError as exc:
            silence_stdout()
            from pubsub.errors import StorageError

            raise StorageError(
                f"cannot write to stdout: {exc.strerror or exc}",
                hint="the records of this batch were released to the group; free space (or "
                "fix the output) and run again",
            ) from None
        for record in records:
            consumer.acknowledge(record, "accept")
        try:
            consumer.commit()
        except ShareFencedError as exc:
            warn(exc.message)
        if remaining is not None:
            remaining -= len(records)


class _Pool:
    """Up to ``workers`` commands at once, fed and acknowledged by the main thread."""

    def __init__(self, consumer: "ShareConsumer", options: ShareOptions) -> None:
        from pubsub.commands._exec import Exec

        assert options.exec_command is not None
        self.consumer = consumer
        self.options = options
        self.exec = Exec(
            options.exec_command, 0, 0, options.dead_letter, options.group, options.exec_timeout_ms
        )
        self.children: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def run(self) -> None:
        options = self.options
        consumer = self.consumer
        executor = ThreadPoolExecutor(options.workers, thread_name_prefix="pubsub-share-exec")
        running: dict[Future[str | None], ShareRecord] = {}
        delayed: list[tuple[float, ShareRecord, str]] = []  # (due, record, error): releases
        queue: list[ShareRecord] = []  # acquired, waiting for a free worker
        started = 0
        last_commit = time.monotonic()
        renew_every = max(0.05, options.lock_timeout / 3)
        last_renew = time.monotonic()
        idle_since = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                for entry in [d for d in delayed if d[0] <= now]:
                    delayed.remove(entry)
                    if consumer.holds(entry[1]):
                        consumer.acknowledge(entry[1], "release", error=entry[2])
                for future in [f for f in running if f.done()]:
                    self._finished(running.pop(future), future.result(), delayed)
                if (running or delayed) and now - last_renew >= renew_every:
                    last_renew = now
                    try:
                        consumer.renew(
                            [
                                r
                                for r in [*running.values(), *(d[1] for d in delayed)]
                                if consumer.holds(r)
                            ]
                        )
                    except ShareFencedError as exc:
                        warn(exc.message)
                while queue and len(running) < options.workers:
                    record = queue.pop(0)
                    running[executor.submit(self._attempt, record)] = record
                # Acquire for the free workers and as many again, so that the next ones
                # start without a transaction each; the accepts ride on the acquisition.
                want = 2 * options.workers - len(running) - len(queue)
                if options.max_messages is not None:
                    want = min(want, options.max_messages - started)
                records: list[ShareRecord] = []
                quiet = not running and not delayed and not queue
                if want > 0 and (not queue or want >= options.workers):
                    wait_for = 0.0
                    if quiet and options.follow:
                        wait_for = 1.0
                        if options.timeout is not None:
                            wait_for = min(
                                wait_for, options.timeout - (time.monotonic() - idle_since)
                            )
                            if wait_for <= 0:
                                return
                    records = consumer.acquire(wait_for, want)
                    last_commit = time.monotonic()
                elif time.monotonic() - last_commit >= ACK_DELAY:
                    _commit(consumer)
                    last_commit = time.monotonic()
                started += len(records)
                queue.extend(records)
                while queue and len(running) < options.workers:
                    record = queue.pop(0)
                    running[executor.submit(self._attempt, record)] = record
                if records:
                    idle_since = time.monotonic()
                elif quiet:
                    if options.max_messages is not None and started >= options.max_messages:
                        return
                    if not options.follow:
                        return  # nothing left this member could acquire
                    continue
                if running or delayed:
                    horizon = min(
                        [renew_every, ACK_DELAY, *(d[0] - time.monotonic() for d in delayed)]
                    )
                    if running:
                        wait(list(running), timeout=max(0.0, horizon), return_when=FIRST_COMPLETED)
                    else:
                        time.sleep(max(0.0, horizon))  # only backoffs left: wait for the first
        except BaseException:
            self._stop_all()
            raise
        finally:
            executor.shutdown(wait=True)
            for future, record in running.items():
                if future.done() and not future.cancelled():
                    with contextlib.suppress(Exception):
                        self._finished(record, future.result(), [])
            _commit(consumer)  # close() then releases what is still held (queue, delayed)

    def _finished(
        self,
        record: "ShareRecord",
        error: str | None,
        delayed: list[tuple[float, "ShareRecord", str]],
    ) -> None:
        consumer = self.consumer
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if not consumer.holds(record):
            warn(f"{where}: the lock ran out while the command ran; the group delivers it again")
            return
        if error is None:
            consumer.acknowledge(record, "accept")
            return
        deliveries = record.delivery_count
        if deliveries >= self.options.max_deliveries:
            consumer.acknowledge(record, "reject", error=error)
            target = (
                f"moved to {self.options.dead_letter}" if self.options.dead_letter else "archived"
            )
            warn(f"{where}: command failed ({error}) on delivery {deliveries}; {target}")
            return
        delay = self.options.backoff * 2 ** (deliveries - 1)
        warn(
            f"{where}: command failed ({error}) on delivery {deliveries} of "
            f"{self.options.max_deliveries}; released in {delay:g} s"
        )
        delayed.append((time.monotonic() + delay, record, error))

    def _attempt(self, record: "ShareRecord") -> str | None:
        """Run the command once for ``record`` (in a worker thread); None on success."""
        env = self.exec.environment(record.record, record.delivery_count)
        env[b"PUBSUB_DELIVERY_COUNT"] = str(record.delivery_count).encode()
        env[b"PUBSUB_SHARE_GROUP"] = self.options.group.encode()
        with self.lock:
            if self.stopping:
                return "stopped"
            child = subprocess.Popen(
                ["/bin/sh", "-c", self.exec.command],
                stdin=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            self.children.add(child)
        limit = self.options.exec_timeout_ms
        try:
            child.communicate(record.value or b"", timeout=None if limit is None else limit / 1000)
        except subprocess.TimeoutExpired:
            assert limit is not None
            _stop(child, min(EXEC_GRACE, limit / 1000))
            return f"timed out after {human_ms(limit)}"
        finally:
            with self.lock:
                self.children.discard(child)
        if child.returncode == 0:
            return None
        if child.returncode < 0:
            return f"killed by signal {-child.returncode}"
        return f"exit status {child.returncode}"

    def _stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            children = list(self.children)
        for child in children:
            _stop(child, EXEC_GRACE)


def _commit(consumer: "ShareConsumer") -> None:
    """Send the pending acknowledgements; refusals (locks that ran out) are warnings."""
    try:
        consumer.commit()
    except ShareFencedError as exc:
        warn(exc.message)


def _stop(child: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM to the command's process group, ``grace`` seconds, then SIGKILL; reap it."""
    for sig, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            child.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    if child.stdin is not None:
        with contextlib.suppress(OSError):
            child.stdin.close()
    child.wait()
