"""``pubsub metrics``: Prometheus text exposition, or a textfile for node_exporter."""

import sys
from typing import Annotated

import typer

from pubsub.commands._common import state


def metrics(
    ctx: typer.Context,
    textfile: Annotated[
        str | None,
        typer.Option(
            "--textfile",
            help="Write atomically to this file (node_exporter's textfile collector reads "
            "*.prom files from its directory) instead of stdout.",
            metavar="PATH",
        ),
    ] = None,
) -> None:
    """Print the metrics in Prometheus' text format (see docs/metrics.md for the names).

    Examples:

      pubsub metrics
      pubsub metrics --textfile /var/lib/node_exporter/textfile/pubsub.prom
    """
    from pubsub.commands._common import mirror_lag_rows
    from pubsub.metrics import exposition, mirror_exposition, write_textfile

    with state(ctx).client() as client:
        text = exposition(client.stats())
        text += mirror_exposition(
            (r.mirror, r.topic, r.partition, r.lag, r.lag_seconds) for r in mirror_lag_rows(client)
        )
    if textfile is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_textfile(text, textfile)
