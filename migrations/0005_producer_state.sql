-- Producer state: what a producer has already written, so that a retry it sends because it
-- does not know the outcome is acknowledged with the original offsets, not stored twice.
--
-- producer_ids holds the counter Kafka clients' producer ids (InitProducerId) are taken from;
-- it only moves forward, so a producer id is never handed out twice, even across restarts.
--
-- producer_state has one row per batch a producer wrote, written in the same transaction as
-- the batch's records. One table serves both kinds of producer:
--   * a Kafka idempotent producer (producer = 'kafka:' || producer id): its last 5 batches per
--     partition, with their sequence numbers and epoch (Kafka's ProducerStateEntry keeps 5);
--   * a record id given to `pubsub produce --id` or produce(id=) (producer = 'id:' || the id;
--     sequences 0, epoch -1): the one record stored under it, found again by (topic_id,
--     producer) while written_ms is inside the topic's dedup.window.ms.
-- Rows past their window are deleted by the writes that would look at them.

CREATE TABLE producer_ids (
    singleton        INTEGER PRIMARY KEY CHECK (singleton = 0),
    next_producer_id INTEGER NOT NULL CHECK (next_producer_id >= 0)
);

INSERT INTO producer_ids (singleton, next_producer_id) VALUES (0, 0);

CREATE TABLE producer_state (
    topic_id         INTEGER NOT NULL REFERENCES topics (topic_id) ON DELETE CASCADE,
    producer         TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    first_sequence   INTEGER NOT NULL,
    last_sequence    INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    base_offset      INTEGER NOT NULL,
    record_timestamp INTEGER NOT NULL,  -- the (first) record's timestamp, to answer a retry
    written_ms       INTEGER NOT NULL,  -- wall clock at the append; entries expire by it
    PRIMARY KEY (topic_id, producer, partition, first_sequence)
) WITHOUT ROWID;

CREATE INDEX producer_state_by_time ON producer_state (topic_id, written_ms);
