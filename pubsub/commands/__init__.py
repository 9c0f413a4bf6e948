"""The ``pubsub`` command line: a Typer app, one module per noun (see :mod:`.app`)."""
