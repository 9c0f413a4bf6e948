"""The jars of Apache Kafka (broker and command-line tools), fetched from Maven Central.

``tests/kafka/pom.xml`` pins the version; ``mvn dependency:copy-dependencies`` copies the jars
into the test cache (see ``tests/support/cache.py``). Java 17 or newer runs them.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.cache import FetchError, cache_root, digest, fetch_once

ROOT = Path(__file__).resolve().parents[2]
KAFKA_DIR = ROOT / "tests" / "kafka"
POM = KAFKA_DIR / "pom.xml"
#: log4j2 configuration of the command-line tools: warnings and errors on stderr only, so
#: their stdout is data.
TOOLS_LOG4J = KAFKA_DIR / "log4j2-tools.properties"
MIN_JAVA = 17
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def kafka_version() -> str:
    """The Kafka version the pom pins (its ``kafka.version`` property)."""
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise FetchError(f"{POM} has no <kafka.version> property")
    return (node.text or "").strip()


def java_executable() -> str:
    """The ``java`` to run Kafka with ($JAVA_HOME first, then PATH), checked to be 17+."""
    return _java()[0]


def java_identity() -> str:
    """A digest of the Java runtime (path and version), naming what only it can read."""
    return digest(*_java())


@functools.cache
def _java() -> tuple[str, str]:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise FetchError(
            "java not found: the Kafka tests run a real Kafka broker, which needs a Java "
            f"{MIN_JAVA}+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    ).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_392" style
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise FetchError(
            f"{java} is Java {major or '?'}; Kafka {kafka_version()} needs {MIN_JAVA}+"
        )
    return java, out


def _maven_executable() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise FetchError(
            "mvn not found: the Kafka tests fetch the broker's jars from Maven Central with "
            "Maven (Debian: apt-get install maven)"
        )
    return mvn


def kafka_home() -> Path:
    """The cache entry for the pinned pom: ``.../kafka-VERSION-DIGEST`` (fetched if needed)."""
    version = kafka_version()
    entry = cache_root() / f"kafka-{version}-{digest(POM.read_bytes())}"

    def build(staging: Path) -> None:
        java_executable()  # fail with the clear message before Maven fails with a vague one
        libs = staging / "libs"
        cmd = [
            _maven_executable(),
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"Maven did not finish fetching Kafka {version} in 900 s") from e
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise FetchError(
                f"Maven could not fetch Kafka {version} (exit {done.returncode}); "
                f"is Maven Central reachable?\n{' '.join(cmd)}\n{tail}"
            )
        for jar in (f"kafka_2.13-{version}.jar", f"kafka-tools-{version}.jar"):
            if not (libs / jar).is_file():
                raise FetchError(f"Maven finished but {jar} is not in {libs}")

    return fetch_once(entry, build)


def kafka_libs() -> Path:
    """The directory of the broker's and the tools' jars (fetched if needed)."""
    return kafka_home() / "libs"


#: The JVM's own warnings go to stderr (by default they go to stdout, which is a tool's data).
JVM_LOG_OPTIONS = ("-Xlog:disable", "-Xlog:all=warning:stderr")


def java_command(main_class: str, *args: str, jvm_options: tuple[str, ...] = ()) -> list[str]:
    """The command line running ``main_class`` from Kafka's jars."""
    return [
        java_executable(),
        *JVM_LOG_OPTIONS,
        *jvm_options,
        "-cp",
        f"{kafka_libs()}/*",
        main_class,
        *args,
    ]


class ClassArchive:
    """An application class-data archive (JDK CDS) for one main class: it halves a Kafka
    JVM's start-up (measured on 2 cores: a tool 3 s -> 1.4 s, the broker 16 s -> 11 s under
    load).

    The first JVM without an archive writes one when it exits (``-XX:ArchiveClassesAtExit``,
    a few seconds more, once per machine); later ones map it. A JVM that was killed leaves
    no archive. ``PUBSUB_TEST_KAFKA_CDS=0`` turns this off.
    """

    def __init__(self, main_class: str, directory: Path | None = None) -> None:
        directory = directory or kafka_home() / "cds"
        self.path = directory / f"{main_class}-{java_identity()}.jsa"
        self._pending: Path | None = None

    def options(self) -> tuple[str, ...]:
        """The JVM options for the next run: map the archive, or write it at exit."""
        if os.environ.get("PUBSUB_TEST_KAFKA_CDS", "1") == "0":
            return ()
        if self.path.is_file():
            return (f"-XX:SharedArchiveFile={self.path}",)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{id(self)}")
        return (f"-XX:ArchiveClassesAtExit={self._pending}",)

    @property
    def writing(self) -> bool:
        """Whether the running JVM will write the archive when it exits."""
        return self._pending is not None

    def finished(self, *, cleanly: bool) -> None:
        """After the JVM exited: keep the archive it wrote only if it was not killed."""
        pending, self._pending = self._pending, None
        if pending is None or not pending.exists():
            return
        if cleanly and pending.stat().st_size > 0:
            os.replace(pending, self.path)  # atomic; a concurrent writer's copy is as good
        else:
            pending.unlink()
