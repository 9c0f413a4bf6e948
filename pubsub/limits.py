"""Fixed limits, in a module of their own so the produce path can read them cheaply."""

#: Largest partition count accepted for a topic. Each partition is a table; beyond this the
#: schema itself (parsed by every new connection) becomes the bottleneck.
MAX_PARTITIONS = 1024
#: Default cap on one record (key + value + headers), Kafka's default.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
#: The largest ``max.message.bytes`` a topic may set.
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024
#: A consumer poll's default cap on key and value bytes (one record is always returned).
DEFAULT_MAX_POLL_BYTES = 16 * 1024 * 1024
#: How long a record id (``produce --id``) is remembered by default (``dedup.window.ms``).
DEFAULT_DEDUP_WINDOW_MS = 2 * 60 * 1000
#: The longest record id accepted, in UTF-8 bytes.
MAX_RECORD_ID_BYTES = 1024
#: Kafka's producer.id.expiration.ms default: the state of a Kafka producer idle this long is
#: forgotten (it may then start again at any sequence).
PRODUCER_EXPIRATION_MS = 24 * 60 * 60 * 1000
