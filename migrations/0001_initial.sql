-- The catalog: topics, their partitions and configuration, consumer groups and their offsets.
-- Each partition's records live in their own table, log_<topic_id>_<partition>, created with
-- the topic (see pubsub/db/catalog.py); topic names are data here, never SQL identifiers.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_ms INTEGER NOT NULL
);

-- AUTOINCREMENT: a topic id is never reused, so a deleted and re-created topic never shares
-- a log table name with its predecessor.
CREATE TABLE topics (
    topic_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    partition_count INTEGER NOT NULL CHECK (partition_count >= 1),
    created_ms      INTEGER NOT NULL,
    -- Bumped by every change of partitions or configuration; producers compare it with
    -- what they cached.
    config_version  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE topic_configs (
    topic_id INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (topic_id, key)
) WITHOUT ROWID;

-- next_offset is the offset the next appended record gets: the per-partition counter,
-- advanced in the same transaction as the insert and never moved back, so offsets are never
-- reused even after every record was deleted. max_timestamp is the largest record timestamp
-- so far (it drives time_index). record_count and byte_count are kept by every append and
-- delete so that sizes never need a scan.
CREATE TABLE partitions (
    topic_id         INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    partition        INTEGER NOT NULL CHECK (partition >= 0),
    log_start_offset INTEGER NOT NULL DEFAULT 0,
    next_offset      INTEGER NOT NULL DEFAULT 0,
    max_timestamp    INTEGER NOT NULL DEFAULT -1,
    record_count     INTEGER NOT NULL DEFAULT 0,
    byte_count       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;

-- Sparse time index: one row each time a partition's running maximum timestamp grows, at the
-- offset where it grew. The first row with timestamp >= T gives the earliest offset whose
-- timestamp is >= T in O(log n), even when timestamps are out of order.
CREATE TABLE time_index (
    topic_id  INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, timestamp)
) WITHOUT ROWID;

CREATE TABLE consumer_groups (
    group_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);

-- committed_offset is Kafka's: the next offset the group will read.
CREATE TABLE group_offsets (
    group_id         INTEGER NOT NULL REFERENCES consumer_groups (group_id) ON DELETE CASCADE,
    topic_id         INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    partition        INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL CHECK (committed_offset >= 0),
    metadata         TEXT,
    commit_ms        INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;

CREATE INDEX group_offsets_by_topic ON group_offsets (topic_id, partition);
