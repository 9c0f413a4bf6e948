"""--db names a backend: file-only commands refuse other targets, the rest go through the client.

Every command is run as a real process against ``kafka://`` targets: on a closed port, and
on a listening socket that must see no connection at all. Nothing may touch the network:
the file-only commands are refused before they run. The others open the Kafka backend and,
on a closed port, fail within ``--kafka-timeout`` with exit 7 naming the address.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from pubsub.commands.app import FILE_ONLY, make_app
from tests.helpers import cli_env, run_cli

CLOSED = "kafka://127.0.0.1:1"
#: A process refused before it opens anything exits within this (generous on a loaded host).
QUICK_SECONDS = 15.0

#: A valid command line for each command that works on any backend.
ANY_BACKEND: dict[str, list[str]] = {
    "produce": ["produce", "t", "v"],
    "consume": ["consume", "t"],
    "stats": ["stats"],
    "metrics": ["metrics"],
    "top": ["top", "-n", "1"],
    "topic create": ["topic", "create", "t"],
    "topic list": ["topic", "list"],
    "topic describe": ["topic", "describe", "t"],
    "topic alter": ["topic", "alter", "t", "--partitions", "2"],
    "topic delete": ["topic", "delete", "t", "--yes"],
    "topic truncate": ["topic", "truncate", "t", "--yes"],
    "group list": ["group", "list"],
    "group describe": ["group", "describe", "g"],
    "group reset-offsets": ["group", "reset-offsets", "g", "-t", "t", "--to-earliest"],
    "group delete": ["group", "delete", "g"],
    "group delete-offsets": ["group", "delete-offsets", "g", "-t", "t"],
    "config list": ["config", "list"],
}

#: Commands that name their own targets (SOURCE and DEST), whatever --db says.
OWN_TARGETS = {"mirror"}


def leaves() -> list[str]:
    """Every command of the tree, as its path ("topic create")."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[str]:
        children = getattr(command, "commands", None)
        if not children:
            yield " ".join(path)
            return
        for name, child in children.items():
            yield from walk(child, (*path, name))

    return list(walk(typer.main.get_command(make_app()), ()))


def is_file_only(path: str) -> bool:
    words = path.split()
    return path in FILE_ONLY or words[0] in FILE_ONLY


FILE_ONLY_LEAVES = [path for path in leaves() if is_file_only(path)]


def test_the_tables_cover_every_command() -> None:
    every = leaves()
    assert all(key in every or any(p.startswith(key + " ") for p in every) for key in FILE_ONLY)
    assert {"db info", "db check", "db vacuum", "db backup", "retention run"} <= set(
        FILE_ONLY_LEAVES
    )
    assert {"bench cli", "config set", "config unset"} <= set(FILE_ONLY_LEAVES)
    assert set(every) >= OWN_TARGETS
    others = [p for p in every if not is_file_only(p) and p not in OWN_TARGETS]
    assert sorted(ANY_BACKEND) == sorted(others), (
        "a new command: add it to ANY_BACKEND, or to FILE_ONLY in pubsub/commands/app.py"
    )


def _run(tmp_path: Path, target: str, argv: list[str]) -> tuple[int, str, bytes, float]:
    started = time.monotonic()
    done = run_cli(
        tmp_path / "unused.db",
        *argv,
        env=cli_env(None, PUBSUB_DB=target, NO_COLOR="1"),
        timeout=60,
    )
    return done.returncode, done.stderr.decode(), done.stdout, time.monotonic() - started


@pytest.mark.parametrize("path", FILE_ONLY_LEAVES)
def test_a_file_only_command_refuses_another_backend(tmp_path: Path, path: str) -> None:
    code, err, out, seconds = _run(tmp_path, CLOSED, path.split())
    assert code == 2, err
    assert err.startswith(f"error: 'pubsub {path}' works only on a database file, not on {CLOSED}")
    assert "\nhint: pass --db PATH" in err and "Traceback" not in err
    assert out == b"" and seconds < QUICK_SECONDS
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize("path", sorted(ANY_BACKEND))
def test_other_commands_fail_fast_on_an_unreachable_cluster(tmp_path: Path, path: str) -> None:
    started = time.monotonic()
    done = run_cli(
        tmp_path / "unused.db",
        *ANY_BACKEND[path],
        env=cli_env(None, PUBSUB_DB=CLOSED, PUBSUB_KAFKA_TIMEOUT="1", NO_COLOR="1"),
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 7, err
    # One line per state change of the connection may come first ("kafka …: unreachable").
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1:1" in errors[0], err
    assert all(line.startswith(("kafka ", "error:", "hint:")) for line in lines), err
    assert "Traceback" not in err and "\nhint:" in err and len(lines) <= 5
    assert done.stdout == b"" and time.monotonic() - started < QUICK_SECONDS


def test_no_command_connects_anywhere(tmp_path: Path) -> None:
    """A socket that listens but never accepts: any connection attempt would queue on it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.setblocking(False)
        target = f"kafka://127.0.0.1:{server.getsockname()[1]}"
        for argv in (["db", "check"], ["retention", "run"], ["bench"], ["config", "set"]):
            code, err, _, _ = _run(tmp_path, target, argv)
            assert code == 2, (argv, err)
        with pytest.raises(BlockingIOError):
            server.accept()


def test_help_of_a_file_only_command_is_shown_on_any_target(tmp_path: Path) -> None:
    code, err, out, _ = _run(tmp_path, CLOSED, ["db", "check", "--help"])
    assert code == 0, err
    assert b"integrity" in out


def test_file_targets_still_run_file_only_commands(db_path: Path) -> None:
    assert run_cli(db_path, "topic", "create", "t").returncode == 0
    done = run_cli(db_path, "db", "info", "--json")
    assert done.returncode == 0 and b'"schema_version"' in done.stdout
