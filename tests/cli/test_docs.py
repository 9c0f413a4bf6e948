"""The command reference and the help texts: generated, complete, and current."""

from __future__ import annotations

from pathlib import Path

import typer

from pubsub.commands.app import make_app
from pubsub.commands.clidoc import render

ROOT = Path(__file__).parents[2]


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    children = getattr(command, "commands", None)
    if not children:
        return [(path, command)]
    found = []
    for name, child in children.items():
        found += _leaves(child, (*path, name))
    return found


def test_cli_reference_is_current() -> None:
    """docs/cli.md is what `make docs` generates from the command tree right now."""
    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run 'make docs'"
    )


def test_every_command_has_an_example() -> None:
    root = typer.main.get_command(make_app())
    leaves = _leaves(root)
    assert len(leaves) > 20
    for path, command in leaves:
        text = getattr(command, "help", "") or ""
        assert "Examples:" in text, path
        assert any(line.strip().startswith("pubsub") for line in text.splitlines()), path
    reference = render()
    for path, _ in leaves:
        assert f"## pubsub {' '.join(path)}\n" in reference, path


def test_every_option_is_explained() -> None:
    root = typer.main.get_command(make_app())
    for path, command in _leaves(root):
        for param in getattr(command, "params", []):
            if param.param_type_name == "option":
                assert getattr(param, "help", None), (path, param.name)


def test_completion_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pubsub --install-completion" in readme
