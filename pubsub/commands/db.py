"""``pubsub db``: facts about the database file."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    JsonOption,
    human_bytes,
    note,
    state,
)
from pubsub.commands._output import emit
from pubsub.errors import CorruptDatabaseError
from pubsub.words import counted

if TYPE_CHECKING:
    from pubsub.broker import DatabaseInfo
    from pubsub.maintenance import Problem

app = typer.Typer(
    help="Inspect the database file.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("info")
def db_info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the path, file and WAL size, schema and SQLite versions and durability mode.

    Does not create the file.

    Examples:

      pubsub db info
      pubsub --db /var/lib/app.db db info --json
    """
    with state(ctx).broker(create=False) as broker:
        info = broker.info()
    emit([info._asdict()], as_json=as_json, render=lambda: _render_info(info))


def _render_info(info: "DatabaseInfo") -> None:
    from pubsub.commands import _render

    _render.fields(
        [
            ("path", info.path),
            ("file size", human_bytes(info.file_bytes)),
            ("WAL size", human_bytes(info.wal_bytes)),
            ("schema version", info.schema_version),
            ("SQLite version", info.sqlite_version),
            ("durability", f"synchronous={info.synchronous}"),
            ("journal mode", info.journal_mode),
            ("auto vacuum", info.auto_vacuum),
            ("pages", f"{info.page_count:,} x {info.page_size} B ({info.freelist_count:,} free)"),
            ("topics", info.topics),
            ("tables", info.tables),
        ],
        title="database",
    )


@app.command("check")
def db_check(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="PRAGMA quick_check instead of integrity_check.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check SQLite's integrity and pubsub's invariants; exit 6 if anything is wrong.

    Invariants: per partition, the record and byte counters match the log, stored offsets lie
    between the log start and the next offset, the time index points into the log; no table
    without its partition; foreign keys hold. Piped or with --json it prints one JSON object,
    whatever the outcome: {"ok", "quick", "checks": [{"check", "ok", "problems"}, ...],
    "problems"} (see docs/cli-json.md).

    Examples:

      pubsub db check
      pubsub db check --quick --json
      pubsub db check --json | jq -e .ok
    """
    with state(ctx).broker() as broker:
        problems = broker.check(quick=quick)
    emit(
        [_check_report(problems, quick=quick)],
        as_json=as_json,
        render=lambda: _render_problems(problems),
    )
    if problems:
        raise CorruptDatabaseError(
            f"{counted(len(problems), 'problem')} found",
            hint="restore from a backup ('pubsub db backup' makes one), or report the details",
        )
    note("ok: integrity and invariants hold")


def _render_problems(problems: "list[Problem]") -> None:
    if problems:
        from pubsub.commands import _render

        _render.table(("check", "where", "problem"), [tuple(p) for p in problems])


def _check_report(problems: "list[Problem]", *, quick: bool) -> dict[str, Any]:
    """The one JSON object of ``db check``: every check run, its result, and the problems."""
    from pubsub.maintenance import CHECKS

    return {
        "ok": not problems,
        "quick": quick,
        "checks": [
            {
                "check": name,
                "ok": not any(p.check == name for p in problems),
                "problems": [
                    {"where": p.where, "detail": p.detail} for p in problems if p.check == name
                ],
            }
            for name in CHECKS
        ],
        "problems": [p._asdict() for p in problems],
    }


@app.command("vacuum")
def db_vacuum(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Rebuild the whole file (VACUUM): needs the database to itself for a while "
            "and up to twice its size in free space.",
        ),
    ] = False,
) -> None:
    """Return free pages to the file system (online, in short steps).

    Examples:

      pubsub db vacuum
      pubsub db vacuum --full
    """
    from pubsub.commands._render import Progress

    with (
        state(ctx).broker() as broker,
        Progress("vacuum", unit="bytes" if full else "pages") as bar,
    ):
        before = broker.info().file_bytes
        pages = broker.vacuum(full=full, progress=lambda done, total: bar.update(done, total=total))
        after = broker.info().file_bytes
    note(f"freed {counted(pages, 'page')}: {human_bytes(before)} -> {human_bytes(after)}")


@app.command("backup")
def db_backup(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The new file to write (must not exist).")],
) -> None:
    """Write a consistent copy of the database while producers and consumers keep running.

    Uses VACUUM INTO (one snapshot, compacted); the file appears only when complete. Never
    copy a live database with cp: the WAL holds committed data the main file does not.

    Examples:

      pubsub db backup /backups/app-$(date +%F).db
    """
    from pubsub.commands._render import Progress

    settings = state(ctx)
    with settings.broker() as broker, Progress("backup", unit="bytes") as bar:
        size = broker.backup(
            path,
            mode=settings.file_mode,
            progress=lambda done, total: bar.update(done, total=total),
        )
    note(f"backup written: {path} ({human_bytes(size)})")
