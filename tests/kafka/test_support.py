"""The machinery behind the Kafka tests: the cache, fetching once, clear failures."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.support import cache, kafka_jars, kcat
from tests.support.cache import FetchError, fetch_once
from tests.support.kafka import random_cluster_id

ROOT = Path(__file__).resolve().parents[2]


def test_cache_root_prefers_explicit_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("PUBSUB_TEST_CACHE", raising=False)
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "pubsub-tests"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "pubsub-tests"
    monkeypatch.setenv("PUBSUB_TEST_CACHE", str(tmp_path / "explicit"))
    assert cache.cache_root() == tmp_path / "explicit"


def test_a_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path: Path) -> None:
    entry = tmp_path / "thing-1"

    def broken(staging: Path) -> None:
        (staging / "half").write_text("written before the failure")
        raise FetchError("network down")

    with pytest.raises(FetchError, match="network down"):
        fetch_once(entry, broken)
    assert not entry.exists()
    assert list(tmp_path.glob("thing-1.partial-*")) == []

    built = fetch_once(entry, lambda staging: (staging / "file").write_text("ok"))
    assert (built / "file").read_text() == "ok"
    assert (built / cache.STAMP).is_file()


def test_an_entry_without_its_stamp_is_built_again(tmp_path: Path) -> None:
    entry = tmp_path / "thing-1"
    entry.mkdir()  # renamed into place, then the fetch died before the stamp
    (entry / "stale").write_text("from the fetch that died")

    fetch_once(entry, lambda staging: (staging / "fresh").write_text("ok"))
    assert sorted(p.name for p in entry.iterdir()) == [cache.STAMP, "fresh"]


def test_a_complete_entry_is_not_built_again(tmp_path: Path) -> None:
    entry = fetch_once(tmp_path / "thing-1", lambda staging: None)

    def must_not_run(staging: Path) -> None:
        raise AssertionError("built twice")

    assert fetch_once(entry, must_not_run) == entry


CONCURRENT_FETCH = """
import sys, time
from pathlib import Path
from tests.support.cache import fetch_once
entry, work = Path(sys.argv[1]), Path(sys.argv[2])
(work / f"arrived-{sys.argv[3]}").touch()

def build(staging):
    with (work / "builds").open("a") as f:
        f.write(sys.argv[3] + "\\n")
    deadline = time.monotonic() + 60
    while not (work / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # in a child: waits (bounded) for the test's "go" file
    (staging / "payload").write_text("built")

print(fetch_once(entry, build))
"""


@pytest.fixture
def fetchers(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_processes_fetching_at_once_build_once(
    tmp_path: Path, fetchers: list[subprocess.Popen[str]]
) -> None:
    entry = tmp_path / "cache" / "thing-1"
    work = tmp_path / "work"
    work.mkdir()
    for n in range(3):
        fetchers.append(
            subprocess.Popen(
                [sys.executable, "-c", CONCURRENT_FETCH, str(entry), str(work), str(n)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    # Every process reached fetch_once while the first build is held open.
    wait_until(
        lambda: len(list(work.glob("arrived-*"))) == 3 and (work / "builds").exists(),
        timeout=60,
        what="the fetchers to start",
    )
    (work / "go").touch()
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in fetchers]

    assert [proc.returncode for proc in fetchers] == [0, 0, 0]
    assert outputs == [str(entry)] * 3
    assert len((work / "builds").read_text().splitlines()) == 1
    assert (entry / "payload").read_text() == "built"


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    kafka_jars._java.cache_clear()
    try:
        with pytest.raises(FetchError, match=r"java not found.*Java 17\+"):
            kafka_jars.java_executable()
    finally:
        monkeypatch.undo()
        kafka_jars._java.cache_clear()


@pytest.mark.kafka  # needs Java
def test_missing_maven_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java, "the Kafka tests need Java (see docs/testing.md)"
    monkeypatch.setenv("JAVA_HOME", str(Path(java).resolve().parents[1]))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PUBSUB_TEST_CACHE", str(tmp_path / "cache"))
    kafka_jars._java.cache_clear()
    try:
        with pytest.raises(FetchError, match="mvn not found"):
            kafka_jars.kafka_home()
    finally:
        monkeypatch.undo()
        kafka_jars._java.cache_clear()
    assert [p for p in (tmp_path / "cache").glob("kafka-*") if p.is_dir()] == []


def test_a_cluster_id_is_what_kafka_storage_accepts() -> None:
    for _ in range(200):
        cluster_id = random_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


@pytest.mark.kafka  # needs Java
def test_a_class_archive_is_kept_only_from_a_jvm_that_exited(tmp_path: Path) -> None:
    archive = kafka_jars.ClassArchive("some.Main", directory=tmp_path)
    [write] = archive.options()
    assert write.startswith("-XX:ArchiveClassesAtExit=")
    Path(write.split("=", 1)[1]).write_bytes(b"half an archive")
    archive.finished(cleanly=False)  # killed while writing it
    assert list(tmp_path.iterdir()) == []

    [write] = archive.options()
    Path(write.split("=", 1)[1]).write_bytes(b"an archive")
    archive.finished(cleanly=True)
    assert archive.path.read_bytes() == b"an archive"
    assert archive.options() == (f"-XX:SharedArchiveFile={archive.path}",)
    assert [p.name for p in tmp_path.iterdir()] == [archive.path.name]


def test_class_archives_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUBSUB_TEST_KAFKA_CDS", "0")
    assert kafka_jars.ClassArchive("some.Main", directory=tmp_path).options() == ()
    assert os.listdir(tmp_path) == []


@pytest.mark.kafka
def test_a_kcat_package_that_is_not_the_pinned_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUBSUB_TEST_CACHE", str(tmp_path / "cache"))
    [kcat_pin, *others] = kcat.PINS["amd64"]
    wrong = kcat_pin._replace(sha256="0" * 64)
    monkeypatch.setitem(kcat.PINS, "amd64", (wrong, *others))
    with pytest.raises(FetchError, match="is not the pinned 0000"):
        kcat.kcat_path()
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
