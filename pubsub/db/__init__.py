"""Storage: the SQLite connection, transaction control, migrations and the SQL of the log.

This layer imports only the standard library and :mod:`pubsub.errors`. It moves opaque bytes;
the API layer (:mod:`pubsub`) owns encoding.
"""
