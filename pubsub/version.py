"""The version of pubsub (one place: the package, the CLI and the packaging read it)."""

__version__ = "0.1.0"
