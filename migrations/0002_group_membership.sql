-- Consumer-group membership: live members with leases, and which member owns each partition.
--
-- A member's lease is kept in the kernel's boot-time clock (it does not jump with the wall
-- clock) together with the boot it belongs to: a lease from another boot is expired.
-- Ownership is handed over cooperatively: a rebalance sets target_member; the current owner
-- releases the partition at its next poll (committing what it consumed), and only then, or
-- once the owner's lease expired, does the target take it. Only the owner may commit.

ALTER TABLE consumer_groups ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

CREATE TABLE group_members (
    group_id           INTEGER NOT NULL REFERENCES consumer_groups (group_id) ON DELETE CASCADE,
    member_id          TEXT NOT NULL,
    client             TEXT NOT NULL,   -- JSON: host, pid, program (for group describe)
    topics             TEXT NOT NULL,   -- JSON list of the topic names it subscribes to
    session_timeout_ms INTEGER NOT NULL,
    boot_id            TEXT NOT NULL,
    lease_expires      INTEGER NOT NULL, -- boot-time clock, ms
    joined_ms          INTEGER NOT NULL, -- wall clock, for display only
    heartbeat_ms       INTEGER NOT NULL, -- wall clock, for display only
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;

CREATE TABLE group_assignments (
    group_id       INTEGER NOT NULL REFERENCES consumer_groups (group_id) ON DELETE CASCADE,
    topic_id       INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    partition      INTEGER NOT NULL,
    target_member  TEXT,     -- who should own it after the last rebalance (NULL: nobody)
    owner_member   TEXT,     -- who owns it now (NULL: free)
    owned_since_ms INTEGER,  -- wall clock, for display only
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;

CREATE INDEX group_assignments_by_topic ON group_assignments (topic_id, partition);
