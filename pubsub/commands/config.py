"""``pubsub config``: database-wide defaults for new topics."""

from typing import Annotated

import typer

from pubsub.commands._common import JsonOption, fail, note, state
from pubsub.commands._output import emit

app = typer.Typer(
    help="Defaults copied into every new topic (retention, sizes, cleanup policy).",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show(values: dict[str, str], as_json: bool) -> None:
    emit([values], as_json=as_json, render=lambda: _render_defaults(values))


def _render_defaults(values: dict[str, str]) -> None:
    from pubsub.commands import _render

    if values:
        _render.fields(sorted(values.items()), title="defaults for new topics")
    else:
        note("no defaults set: new topics keep everything (retention.ms=-1)")


@app.command("list")
def config_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the defaults for new topics.

    Examples:

      pubsub config list
    """
    with state(ctx).client() as client:
        _show(client.defaults(), as_json)


@app.command("set")
def config_set(
    ctx: typer.Context,
    pairs: Annotated[
        list[str],
        typer.Argument(help="KEY=VALUE pairs, e.g. retention.ms=7d.", metavar="KEY=VALUE…"),
    ],
    as_json: JsonOption = False,
) -> None:
    """Set defaults for topics created from now on (existing topics keep theirs).

    Examples:

      pubsub config set retention.ms=7d retention.bytes=1GiB
    """
    from pubsub import config

    values = config.parse_config_pairs(pairs)
    with state(ctx).broker(create=True) as broker:
        _show(broker.set_defaults(values), as_json)


@app.command("unset")
def config_unset(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(help="Keys to remove.", metavar="KEY…")],
    as_json: JsonOption = False,
) -> None:
    """Remove defaults (new topics then keep everything unless told otherwise).

    Examples:

      pubsub config unset retention.ms
    """
    if not keys:
        fail("give at least one KEY")
    with state(ctx).broker() as broker:
        _show(broker.set_defaults(unset=keys), as_json)
