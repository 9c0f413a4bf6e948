-- Share groups (Kafka's KIP-932 queues): any number of members read the same partitions, each
-- record acquired by one member at a time under a lock and acknowledged on its own.
--
-- Per group and partition, start_offset (Kafka's share-partition start offset) is the first
-- offset not yet accepted or rejected; end_offset is the first offset never acquired. Only the
-- in-flight window [start_offset, end_offset) has rows in share_records, and its width is
-- bounded, so the bookkeeping does not grow with the log; records from end_offset on are
-- available with no deliveries so far. An offset of the window without a row (a hole left by
-- compaction) has nothing to deliver. Rows below start_offset are deleted as it advances.
-- Producers never read these tables: an idle share group costs them nothing.
--
-- Locks use the boot-time clock with the boot they belong to, as group leases do: a lock from
-- another boot, or one that ran out, is released.

CREATE TABLE share_groups (
    share_group_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    created_ms     INTEGER NOT NULL
);

CREATE TABLE share_partitions (
    share_group_id INTEGER NOT NULL REFERENCES share_groups (share_group_id) ON DELETE CASCADE,
    topic_id       INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    partition      INTEGER NOT NULL,
    start_offset   INTEGER NOT NULL CHECK (start_offset >= 0),
    end_offset     INTEGER NOT NULL CHECK (end_offset >= start_offset),
    accepted_count INTEGER NOT NULL DEFAULT 0,  -- records accepted, ever (for operators)
    archived_count INTEGER NOT NULL DEFAULT 0,  -- records rejected or dead-lettered, ever
    updated_ms     INTEGER NOT NULL,            -- wall clock, for display only
    PRIMARY KEY (share_group_id, topic_id, partition)
) WITHOUT ROWID;

CREATE INDEX share_partitions_by_topic ON share_partitions (topic_id, partition);

-- state: 0 available, 1 acquired, 2 acknowledged (accepted), 4 archived (rejected, dead-lettered
-- or out of deliveries). member_id, boot_id and lock_expires describe the lock of an acquired
-- record (NULL otherwise); last_error is what the last holder said when it gave the record up.
CREATE TABLE share_records (
    share_group_id INTEGER NOT NULL,
    topic_id       INTEGER NOT NULL,
    partition      INTEGER NOT NULL,
    "offset"       INTEGER NOT NULL,
    state          INTEGER NOT NULL CHECK (state IN (0, 1, 2, 4)),
    delivery_count INTEGER NOT NULL DEFAULT 0,
    member_id      TEXT,
    boot_id        TEXT,
    lock_expires   INTEGER,  -- boot-time clock, ms
    last_error     TEXT,
    PRIMARY KEY (share_group_id, topic_id, partition, "offset"),
    FOREIGN KEY (share_group_id, topic_id, partition)
        REFERENCES share_partitions (share_group_id, topic_id, partition) ON DELETE CASCADE
) WITHOUT ROWID;
