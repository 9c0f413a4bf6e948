"""The wheel ships the migrations, and a non-editable install gives a working ``pubsub``."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("pubsub_sqlite-*.whl")
    return built


def test_wheel_contains_migrations_and_typing_marker(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    sources = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert sources
    for name in sources:
        assert f"pubsub/migrations/{name}" in names
    assert "pubsub/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The installed copy comes first on the path; dependencies come from this environment.
    env = dict(os.environ, PYTHONPATH=str(target), PUBSUB_DB=str(tmp_path / "w.db"))
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pubsub.db.migrations as m; print(m.__file__); print(m.migrations_dir())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    module_file, migrations = where.stdout.splitlines()
    assert module_file.startswith(str(target)), module_file
    assert migrations.startswith(str(target)), migrations
    script = target / "bin" / "pubsub"
    for args in (["topic", "create", "t"], ["produce", "t", "hello"]):
        subprocess.run(
            [sys.executable, str(script), *args], env=env, check=True, cwd=tmp_path, timeout=60
        )
    out = subprocess.run(
        [sys.executable, str(script), "consume", "t"],
        env=env,
        capture_output=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout == b"hello\n"
