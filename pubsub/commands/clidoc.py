"""Generate ``docs/cli.md`` from the command tree itself, so the reference cannot drift.

Run ``python -m pubsub.commands.clidoc > docs/cli.md`` (``make docs``); a test fails when the
file differs from what this prints.
"""

import sys
from collections.abc import Iterator
from typing import Any

import typer

from pubsub.commands.app import make_app, reflow

HEADER = """\
# Command reference

Generated from the command tree by `make docs` (`python -m pubsub.commands.clidoc`); do not edit
by hand. `pubsub COMMAND --help` prints the same text. Exit codes, the JSON formats and the
environment variables are described in the [README](../README.md) and
[cli-json.md](cli-json.md).
"""


def _walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name in sorted(getattr(command, "commands", {})):
        yield from _walk(command.commands[name], [*path, name])


def _default(param: Any) -> str:
    if param.is_flag or param.default is None or getattr(param, "show_default", True) is False:
        return ""
    default = param.default
    if isinstance(default, (list, tuple)):
        return "" if not default else ", ".join(map(str, default))
    return str(getattr(default, "value", default))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _params(command: Any, ctx: Any) -> list[str]:
    arguments, options = [], []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = f"`{param.human_readable_name}`" + ("" if param.required else " (optional)")
            arguments.append(f"| {name} | {_cell(getattr(param, 'help', '') or '')} |")
            continue
        names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        metavar = "" if param.is_flag else f" `{_cell(param.make_metavar(ctx))}`"
        default = _default(param)
        text = _cell(param.help or "")
        if param.envvar:
            text += f" Environment: `{param.envvar}`."
        if default:
            text += f" Default: `{_cell(default)}`."
        options.append(f"| {names}{metavar} | {text.strip()} |")
    lines: list[str] = []
    if arguments:
        lines += ["", "| argument | meaning |", "|---|---|", *arguments]
    if options:
        lines += ["", "| option | meaning |", "|---|---|", *options]
    return lines


def _help(text: str | None) -> list[str]:
    """Help text as Markdown: prose paragraphs as they are, indented blocks as code."""
    out: list[str] = []
    for paragraph in (reflow(text) or "").split("\n\n"):
        lines = paragraph.splitlines()
        if lines and all(line[:1].isspace() for line in lines):
            out += ["", "```sh", *(line.strip() for line in lines), "```"]
        elif paragraph.strip():
            out += ["", paragraph.strip()]
    return out


def render() -> str:
    """The whole reference as Markdown."""
    root = typer.main.get_command(make_app())
    lines = [HEADER.rstrip("\n")]
    contents: list[str] = []
    sections: list[str] = []
    for path, command in _walk(root, ["pubsub"]):
        title = " ".join(path)
        ctx = typer.Context(command, info_name=title)
        anchor = title.replace(" ", "-")
        contents.append(f"{'  ' * (len(path) - 1)}- [`{title}`](#{anchor})")
        pieces = " ".join(command.collect_usage_pieces(ctx))
        sections += ["", f"## {title}", "", "```", f"{title} {pieces}".rstrip(), "```"]
        sections += _help(command.help)
        sections += _help(command.epilog)
        sections += _params(command, ctx)
        if getattr(command, "commands", None):
            sections += ["", "| command | what it does |", "|---|---|"]
            for name in sorted(command.commands):
                child = command.commands[name]
                summary = _cell(child.get_short_help_str(limit=200))
                sections.append(f"| [`{name}`](#{anchor}-{name}) | {summary} |")
    lines += ["", *contents, *sections]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the reference to stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
