"""``pubsub serve``: the Kafka wire protocol over one database file.

:mod:`.server` accepts connections and runs the request loop on asyncio; the SQLite work runs
in worker threads, each with a :class:`~pubsub.broker.Broker` of its own (:mod:`.workers`).
:mod:`.log` answers the requests on records (Produce, Fetch, ListOffsets, Metadata),
:mod:`.admin` the administrative ones, and :mod:`.groups` is the classic group coordinator,
kept in the server's memory with the committed offsets in the file. Requests are decoded and
responses encoded by :mod:`pubsub.kafka.wire`; nothing here runs SQL of its own.
"""
