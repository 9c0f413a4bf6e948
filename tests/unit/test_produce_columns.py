"""Writer.produce_columns, the wire server's append path: the checks of produce_batch, one
transaction for every partition given, the records as stored."""

from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.errors import InvalidRecordError
from pubsub.records import encode_headers
from pubsub.writer import Columns


def test_columns_are_stored_as_given(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=3)
        writer = broker.services.writer
        result = writer.produce_columns(
            "t",
            [
                Columns(2, [b"a", None, b"c"], [b"k", None, b"k2"], None, [5, -1, 7]),
                Columns(0, [b"x"], None, [encode_headers([("h", b"v")])]),
            ],
        )
        assert result.offsets == {2: (0, 3), 0: (0, 1)}
        assert result.written == 4
        assert result.topic_id == broker.services.topics.meta("t").topic_id
        two = broker.fetch("t", 2, 0)
        assert [(r.offset, r.key, r.value) for r in two] == [
            (0, b"k", b"a"),
            (1, None, None),
            (2, b"k2", b"c"),
        ]
        assert two[0].timestamp == 5 and two[2].timestamp == 7
        assert two[1].timestamp > 1_600_000_000_000  # a negative one: stamped at the append
        [zero] = broker.fetch("t", 0, 0)
        assert zero.headers == (("h", b"v"),) and zero.timestamp > 1_600_000_000_000


def test_a_refused_record_writes_nothing_and_names_its_index(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2, config={"max.message.bytes": "10"})
        broker.create_topic("c", config={"cleanup.policy": "compact"})
        writer = broker.services.writer
        with pytest.raises(InvalidRecordError) as too_large:
            writer.produce_columns("t", [Columns(0, [b"1", b"2"]), Columns(1, [b"3", b"x" * 11])])
        assert too_large.value.index == 3
        with pytest.raises(InvalidRecordError) as bad_partition:
            writer.produce_columns("t", [Columns(0, [b"1"]), Columns(5, [b"2"])])
        assert bad_partition.value.index == 1
        with pytest.raises(InvalidRecordError) as keyless:
            writer.produce_columns("c", [Columns(0, [b"1", b"2"], [b"k", None])])
        assert keyless.value.index == 1
        with pytest.raises(InvalidRecordError):
            writer.produce_columns("c", [Columns(0, [b"1"])])
        assert [p.records for p in broker.describe_topic("t").partition_info] == [0, 0]
        assert broker.describe_topic("c").records == 0
