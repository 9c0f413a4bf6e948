-- Mirrors (pubsub mirror): the file's own identity, the positions a mirror writing into this
-- file has reached in its source, and the progress of mirrors reading from this file.
--
-- identity: one row, a random id made when the schema is created or upgraded. A forwarded
-- record's pubsub-origin header names the file it came from by this id, and a mirror never
-- forwards a record back into the file it came from. A copy of the file (backup) keeps it.
CREATE TABLE identity (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    file_id    TEXT NOT NULL
);

INSERT INTO identity (singleton, file_id) VALUES (1, lower(hex(randomblob(16))));

-- Destination side: written in the same transaction as the records a mirror appends here,
-- so the records and the position they reach are committed together (exactly once).
-- topic is the SOURCE topic's name; next_offset the next source offset to forward.
CREATE TABLE mirror_positions (
    mirror       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    partition    INTEGER NOT NULL CHECK (partition >= 0),
    source_id    TEXT NOT NULL,
    source       TEXT NOT NULL,   -- the source as shown to people (no secrets)
    next_offset  INTEGER NOT NULL CHECK (next_offset >= 0),
    source_end   INTEGER NOT NULL, -- the source's log end when last looked at
    skipped      INTEGER NOT NULL DEFAULT 0, -- records deleted at the source before forwarding
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (mirror, topic, partition)
) WITHOUT ROWID;

-- Source side: how far each named mirror reading this file has forwarded (written after the
-- destination committed, so it never runs ahead of it). Status and retention read it:
-- retention.hold.mirrors=true keeps every record a mirror has not forwarded yet.
CREATE TABLE mirror_progress (
    mirror            TEXT NOT NULL,
    topic_id          INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    partition         INTEGER NOT NULL CHECK (partition >= 0),
    destination       TEXT NOT NULL,  -- as shown to people (no secrets)
    forwarded_offset  INTEGER NOT NULL CHECK (forwarded_offset >= 0),
    forwarded_ms      INTEGER,        -- when records were last forwarded (NULL: never)
    skipped           INTEGER NOT NULL DEFAULT 0,
    state             TEXT NOT NULL,
    updated_ms        INTEGER NOT NULL,
    PRIMARY KEY (mirror, topic_id, partition)
) WITHOUT ROWID;

CREATE INDEX mirror_progress_by_topic ON mirror_progress (topic_id, partition);
