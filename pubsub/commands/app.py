"""The composition root: the only module that knows the whole command tree.

``main()`` is the console script. Commands are registered lazily: when the command line names
one command (``pubsub produce …``), only that command's module is imported and built, because
start-up time is part of the product (shell loops call ``pubsub produce`` thousands of times).
Help and completion build the whole tree.

Errors become output and an exit code in exactly one place, :class:`PubsubGroup.main`.
"""

import gc

# Importing Typer builds thousands of long-lived objects and no garbage: collecting during
# it is wasted start-up time (a few milliseconds of every one-shot command).
_collecting = gc.isenabled()
gc.disable()
try:
    import importlib
    import inspect
    import sys
    from collections.abc import Sequence
    from typing import Annotated, Any

    import typer
    from typer.core import TyperGroup

    from pubsub.commands._common import (
        State,
        SyncChoice,
        finite,
        report_error,
        silence_stdout,
        use_utc,
    )
    from pubsub.errors import PubsubError
finally:
    if _collecting:
        gc.enable()

#: command name -> (module, attribute, is a group of subcommands)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "topic": ("pubsub.commands.topic", "app", True),
    "produce": ("pubsub.commands.produce", "produce", False),
    "consume": ("pubsub.commands.consume", "consume", False),
    "group": ("pubsub.commands.group", "app", True),
    "retention": ("pubsub.commands.retention", "app", True),
    "config": ("pubsub.commands.config", "app", True),
    "bench": ("pubsub.commands.bench", "app", True),
    "stats": ("pubsub.commands.stats", "stats", False),
    "metrics": ("pubsub.commands.metrics", "metrics", False),
    "top": ("pubsub.commands.top", "top", False),
    "db": ("pubsub.commands.db", "app", True),
    "serve": ("pubsub.commands.serve", "app", True),
    "mirror": ("pubsub.commands.mirror", "mirror", False),
}

#: The commands that exist only for a database file, by command path (a group, or a group
#: and one of its commands), with why they mean nothing elsewhere. On another backend they
#: fail before they run (exit 2): see :func:`refuse_file_only`.
FILE_ONLY: dict[str, str] = {
    "db": "a cluster keeps its own storage: file size, WAL, integrity check, vacuum and backup "
    "mean nothing there",
    "retention": "a cluster enforces retention itself, from each topic's retention.ms and "
    "retention.bytes",
    "bench": "it measures pubsub on a database file against raw sqlite3",
    "config set": "a cluster's defaults for new topics are its brokers' configuration",
    "config unset": "a cluster's defaults for new topics are its brokers' configuration",
    "serve": "it serves a database file to Kafka clients; point them at the cluster itself",
}

#: Global options that take a value (skipped when looking for the command name).
_VALUE_OPTIONS = (
    "--db",
    "--sync",
    "--busy-timeout",
    "--file-mode",
    "--kafka-config",
    "--kafka-timeout",
)

HELP = """A Kafka-shaped durable message log in one SQLite file.

Topics with partitions, offsets, keys, headers and timestamps; consumer groups with committed
offsets; no daemon: every process that opens the file is a full client.
"""

EPILOG = """
Examples:

  pubsub topic create orders --partitions 3
  echo hello | pubsub produce orders
  pubsub consume orders --group billing --format json
"""


class PubsubGroup(TyperGroup):
    """The root command: maps every error to ``error:``/``hint:`` and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit with the documented exit code."""
        code = 0
        try:
            result = super().main(
                args=args,
                prog_name=prog_name or "pubsub",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            if isinstance(result, int) and not isinstance(result, bool):
                code = result
        except PubsubError as exc:
            report_error(exc.message, exc.hint)
            code = int(exc.exit_code)
        except typer.TyperException as exc:  # usage errors from the vendored Click
            code = _usage_error(exc)
        except typer.Abort:
            code = 130
        except BrokenPipeError:
            silence_stdout()
            code = 0
        except KeyboardInterrupt:
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code

    def resolve_command(  # type: ignore[override]
        self, ctx: typer.Context, args: list[str]
    ) -> tuple[str | None, Any, list[str]]:
        """Find the command; one that works only on a database file is refused here, before
        it runs, when ``--db`` names another backend (shell completion is never refused)."""
        found = super().resolve_command(ctx, args)
        if not ctx.resilient_parsing:
            refuse_file_only(ctx.params.get("db"), args, ctx.command)
        return found

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        """Run the command; a reader that closed the pipe (``| head``) ends it quietly."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Caught here because Typer's own main() turns EPIPE into exit 1 before it
            # reaches main() above.
            silence_stdout()
            raise typer.Exit(0) from None


def refuse_file_only(target: object, args: Sequence[str], root: object = None) -> None:
    """Raise :class:`~pubsub.errors.UnsupportedError` if ``args`` (the command line after
    the global options) names a :data:`FILE_ONLY` command and ``target`` is not a file.

    Help (``-h``, ``--help``) is never refused. Opens nothing: no connection is tried.
    """
    if not isinstance(target, str) or "--help" in args or "-h" in args:
        return
    from pubsub.client import is_file

    if is_file(target):
        return
    positional = [arg for arg in args if not arg.startswith("-")]
    words = positional[:2]
    reason = FILE_ONLY.get(" ".join(words)) or FILE_ONLY.get(words[0] if words else "")
    # Name the whole command path where the tree is deeper ("serve users add").
    path = positional[:1]
    command = getattr(root, "commands", {}).get(path[0]) if path else None
    for arg in positional[1:]:
        children = getattr(command, "commands", None)
        if not children or arg not in children:
            break
        path.append(arg)
        command = children[arg]
    if len(path) > len(words):
        words = path
    if reason is not None:
        from pubsub.errors import UnsupportedError

        raise UnsupportedError(
            f"'pubsub {' '.join(words)}' works only on a database file, not on "
            f"{target[:80]} ({reason})",
            hint="pass --db PATH (or set PUBSUB_DB) to a pubsub database file",
        )


def _usage_error(exc: typer.TyperException) -> int:
    ctx = getattr(exc, "ctx", None)
    hint = f"see '{ctx.command_path} --help'" if ctx is not None else "see 'pubsub --help'"
    report_error(exc.format_message(), hint)
    return int(getattr(exc, "exit_code", 2))


def _version(value: bool) -> None:
    if value:
        from pubsub.version import __version__

        sys.stdout.write(f"pubsub {__version__}\n")
        raise typer.Exit(0)


def root(
    ctx: typer.Context,
    db: Annotated[
        str,
        typer.Option(
            "--db",
            envvar="PUBSUB_DB",
            help="The database file.",
            show_default=True,
        ),
    ] = "pubsub.db",
    sync: Annotated[
        SyncChoice,
        typer.Option(
            "--sync",
            envvar="PUBSUB_SYNC",
            case_sensitive=False,
            help="full: an acknowledged write survives power loss; normal: faster, "
            "survives a crash of the process but may lose the last writes on power loss.",
        ),
    ] = SyncChoice.full,
    busy_timeout: Annotated[
        float,
        typer.Option(
            "--busy-timeout",
            envvar="PUBSUB_BUSY_TIMEOUT",
            min=0.0,
            callback=finite,
            help="Seconds a write waits for another writer before failing (exit 5).",
        ),
    ] = 10.0,
    file_mode: Annotated[
        str,
        typer.Option(
            "--file-mode",
            envvar="PUBSUB_FILE_MODE",
            metavar="MODE",
            help="Octal mode of a new database and its -wal, -shm and backup files, whatever "
            "the umask: 0600, or 0640/0660 for a group.",
        ),
    ] = "0600",
    kafka_config: Annotated[
        str | None,
        typer.Option(
            "--kafka-config",
            envvar="PUBSUB_KAFKA_CONFIG",
            metavar="FILE",
            help="librdkafka properties for a kafka:// --db (kcat's -F format: key=value "
            "lines); the URL's query wins over the file.",
        ),
    ] = None,
    kafka_timeout: Annotated[
        float,
        typer.Option(
            "--kafka-timeout",
            envvar="PUBSUB_KAFKA_TIMEOUT",
            min=0.1,
            callback=finite,
            help="Seconds a kafka:// --db may take to answer before the command fails (exit 7).",
        ),
    ] = 5.0,
    utc: Annotated[
        bool,
        typer.Option(
            "--utc",
            envvar="PUBSUB_UTC",
            help="Show times in tables in UTC instead of the local time zone.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A Kafka-shaped durable message log in one SQLite file."""
    from pubsub.config import parse_file_mode

    ctx.obj = State(
        db,
        sync.value,
        busy_timeout,
        parse_file_mode(file_mode),
        kafka_config=kafka_config,
        kafka_timeout=kafka_timeout,
    )
    if utc:
        use_utc(True)


def _wanted(argv: Sequence[str]) -> str | None:
    """The command named on the command line, if it can be told without parsing."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in _VALUE_OPTIONS:
            skip = True
            continue
        if token == "--":
            return None
        if token.startswith("-"):
            continue
        return token
    return None


def make_app(only: str | None = None) -> typer.Typer:
    """Build the Typer app: the whole tree, or just the command ``only``."""
    app = typer.Typer(
        cls=PubsubGroup,
        name="pubsub",
        help=HELP,
        epilog=EPILOG,
        no_args_is_help=False,
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    names = [only] if only in COMMANDS else list(COMMANDS)
    for name in names:
        module_name, attribute, is_group = COMMANDS[name]
        target = getattr(importlib.import_module(module_name), attribute)
        if is_group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def reflow(text: str | None) -> str | None:
    """Help text with each prose paragraph on one line (the terminal wraps it).

    Rich keeps the line breaks of a docstring, which were made for the source file, not for
    the terminal. Paragraphs with indented lines (examples) keep theirs.
    """
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if any(line[:1].isspace() for line in p.splitlines()) else " ".join(p.split("\n"))
        for p in paragraphs
    )


def tidy_help(command: Any) -> Any:
    """Reflow the help of ``command`` and every command under it."""
    command.help = reflow(command.help)
    command.epilog = reflow(command.epilog)
    for child in getattr(command, "commands", {}).values():
        tidy_help(child)
    return command


def main(argv: Sequence[str] | None = None) -> None:
    """The ``pubsub`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Shell completion asks for the whole tree.
    only = None if any(k.endswith("_COMPLETE") for k in _completion_env()) else _wanted(args)
    app = make_app(only)
    command = typer.main.get_command(app)
    if "--help" in args or "-h" in args or not args:
        tidy_help(command)
    if argv is not None:  # called from Python: leave the caller's collector alone
        command.main(args=args, prog_name="pubsub")
        return
    # The process is this command. What start-up built lives until the exit: keep it out of
    # every collection, and out of the one the interpreter runs at exit, which otherwise
    # walks every object again (about a fifth of a one-shot command's time). What the
    # command made is frozen at the end for the same reason.
    gc.freeze()
    try:
        command.main(args=args, prog_name="pubsub")
    finally:
        gc.freeze()


def _completion_env() -> list[str]:
    import os

    return [key for key in os.environ if key.startswith("_") and key.endswith("_COMPLETE")]
