"""The Java client program of the tests (``tests/serve/java/ClientProbe.java``), compiled once.

``javac`` compiles it against the Kafka jars the tests fetch (``tests/support/kafka_jars.py``)
into the test cache, in an entry named after a digest of the source, the jars and the Java
runtime, so an edited source is recompiled and nothing else is. It runs on the same class
path as Kafka's own tools, with their JVM options (warnings on stderr, stdout is data).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.cache import FetchError, cache_root, digest, fetch_once
from tests.support.kafka import TOOL_JVM_OPTIONS
from tests.support.kafka_jars import (
    JVM_LOG_OPTIONS,
    ClassArchive,
    java_executable,
    java_identity,
    kafka_home,
    kafka_libs,
)

SOURCE = Path(__file__).resolve().parent / "java" / "ClientProbe.java"
MAIN_CLASS = "ClientProbe"


def _javac() -> str:
    found = shutil.which("javac", path=str(Path(java_executable()).resolve().parent))
    found = found or shutil.which("javac")
    if not found:
        raise FetchError(
            "javac not found: the Java client tests compile a small program "
            "(Debian: apt-get install openjdk-17-jdk-headless)"
        )
    return found


def probe_home() -> Path:
    """The cache entry holding ``probe.jar`` (compiled if needed)."""
    home = kafka_home()
    entry = cache_root() / (f"java-probe-{digest(SOURCE.read_bytes(), home.name, java_identity())}")

    def build(staging: Path) -> None:
        classes = staging / "classes"
        for cmd in (
            [
                _javac(),
                "-encoding",
                "UTF-8",
                "-cp",
                f"{kafka_libs()}/*",
                "-d",
                str(classes),
                str(SOURCE),
            ],
            # A jar, not a directory: the JVM's class-data archive only takes classes from jars.
            ["jar", "--create", "--file", str(staging / "probe.jar"), "-C", str(classes), "."],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                raise FetchError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")

    return fetch_once(entry, build)


def archive() -> ClassArchive:
    """The class-data archive of the program (it shortens each JVM's start-up)."""
    return ClassArchive(MAIN_CLASS, probe_home() / "cds")


def probe_command(mode: str, *args: str, jvm_options: tuple[str, ...] = ()) -> list[str]:
    """The command line running ``ClientProbe MODE ARGS``."""
    return [
        java_executable(),
        *JVM_LOG_OPTIONS,
        *jvm_options,
        *TOOL_JVM_OPTIONS,
        "-cp",
        f"{probe_home() / 'probe.jar'}:{kafka_libs()}/*",
        MAIN_CLASS,
        mode,
        *args,
    ]


def run_script(bootstrap: str, topic: str, group: str, *dumps: str) -> str:
    """Run the script mode to its end; its stdout (one JSON object)."""
    cds = archive()
    cmd = probe_command("script", bootstrap, topic, group, *dumps, jvm_options=cds.options())
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        cds.finished(cleanly=False)
        raise
    cds.finished(cleanly=done.returncode == 0)
    assert done.returncode == 0, done.stderr
    return done.stdout


def member_command(bootstrap: str, topic: str, group: str, *assignor: str) -> list[str]:
    """A group member's command line (it maps the class-data archive if there is one);
    ``assignor``: a ``partition.assignment.strategy`` class (default: the client's)."""
    cds = archive()
    options = cds.options() if cds.path.is_file() else ()  # killed members write none
    return probe_command("member", bootstrap, topic, group, *assignor, jvm_options=options)
