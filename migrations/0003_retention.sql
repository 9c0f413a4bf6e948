-- Retention and compaction.
--
-- cleaned_offset: compaction has already reduced every key below this offset to its latest
-- record, so the next pass only looks at keys that appeared from here on.
-- config_defaults: configuration copied into every new topic (database-wide defaults); the
-- built-in default keeps everything.
-- retention_runs: one row per sweep, for operators and for metrics.

ALTER TABLE partitions ADD COLUMN cleaned_offset INTEGER NOT NULL DEFAULT 0;

CREATE TABLE config_defaults (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE retention_runs (
    run_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms       INTEGER NOT NULL,
    finished_ms      INTEGER NOT NULL,
    deleted_records  INTEGER NOT NULL,
    deleted_bytes    INTEGER NOT NULL,
    partitions       INTEGER NOT NULL
);

-- Leases for maintenance that must not run twice at once (overlapping cron runs): the holder
-- renews its lease while it works; a lease that ran out, or whose holder process is gone,
-- can be taken over.
CREATE TABLE maintenance_leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,   -- JSON: host, pid
    boot_id       TEXT NOT NULL,
    lease_expires INTEGER NOT NULL -- boot-time clock, ms
) WITHOUT ROWID;
