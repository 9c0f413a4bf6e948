"""``pubsub db``: facts about the database file."""

import typer

from pubsub.commands._common import (
    JsonOption,
    human_bytes,
    state,
    stdout_is_tty,
    write_json_lines,
)

app = typer.Typer(
    help="Inspect the database file.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("info")
def db_info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the path, file and WAL size, schema and SQLite versions and durability mode.

    Does not create the file. Examples: pubsub db info | pubsub --db /var/lib/app.db db info --json
    """
    with state(ctx).broker(create=False) as broker:
        info = broker.info()
    data = info._asdict()
    if as_json or not stdout_is_tty():
        write_json_lines([data])
        return
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
