"""The hand-written FetchResponse encoder must match kio byte for byte at every version."""

from __future__ import annotations

import io
import uuid

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from kawa.protocol import api
from kawa.protocol.fetch_response import PartitionFetch, TopicFetch, encode_fetch_response


def _kio_encode(version: int, topics: list[TopicFetch]) -> bytes:
    cls = api.response_type(api.FETCH, version)
    topic_cls = api.nested(cls, "FetchableTopicResponse")
    partition_cls = api.nested(cls, "PartitionData")
    aborted_empty: tuple[object, ...] = ()
    response = api.build(
        cls,
        error_code=ErrorCode.none,
        session_id=0,
        responses=tuple(
            api.build(
                topic_cls,
                topic=t.name,
                topic_id=t.topic_id,
                partitions=tuple(
                    api.build(
                        partition_cls,
                        partition_index=p.index,
                        error_code=ErrorCode(p.error_code),
                        high_watermark=p.high_watermark,
                        last_stable_offset=p.high_watermark,
                        log_start_offset=p.log_start_offset,
                        aborted_transactions=aborted_empty,
                        preferred_read_replica=-1,
                        records=b"".join(bytes(c) for c in p.chunks),
                    )
                    for p in t.partitions
                ),
            )
            for t in topics
        ),
    )
    buf = io.BytesIO()
    entity_writer(cls)(buf, response)
    return buf.getvalue()


@pytest.mark.parametrize("version", range(4, 17))
def test_matches_kio(version: int) -> None:
    topics = [
        TopicFetch(
            "alerts",
            uuid.uuid4(),
            [
                PartitionFetch(0, 0, 42, 3, [b"\x01" * 70, b"\x02" * 80], 150),
                PartitionFetch(1, 1, 7, 0, (), 0),
            ],
        ),
        TopicFetch("t", uuid.uuid4(), []),
    ]
    parts, size = encode_fetch_response(version, topics)
    ours = b"".join(bytes(p) for p in parts)
    assert len(ours) == size
    assert ours == _kio_encode(version, topics)
    # And kio reads it back to the same values.
    decoded, used = entity_reader(api.response_type(api.FETCH, version))(ours, 0)
    assert used == len(ours)
    assert decoded.responses[0].partitions[0].records == b"\x01" * 70 + b"\x02" * 80
    assert decoded.responses[0].partitions[1].error_code == ErrorCode.offset_out_of_range
