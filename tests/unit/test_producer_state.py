"""Idempotent producer rules: duplicates, gaps, epochs (Kafka's ProducerStateManager)."""

from __future__ import annotations

import pytest
from batches import header_of, make_batch
from kio.schema.errors import ErrorCode

from kawa.broker.producer_state import ProducerStateTable, SequenceError


def _batch(seq: int, count: int = 2, epoch: int = 0, pid: int = 7):  # type: ignore[no-untyped-def]
    return header_of(make_batch([b"r"] * count, producer_id=pid, producer_epoch=epoch, base_sequence=seq))


def test_in_order_batches_are_new_and_retries_are_duplicates() -> None:
    table = ProducerStateTable()
    first, second = _batch(0), _batch(2)
    assert table.check(first) is None
    table.record(first, base_offset=100)
    assert table.check(second) is None
    table.record(second, base_offset=102)
    assert table.check(_batch(0)) == 100
    assert table.check(_batch(2)) == 102


def test_gap_is_out_of_order() -> None:
    table = ProducerStateTable()
    table.record(_batch(0), 0)
    with pytest.raises(SequenceError) as e:
        table.check(_batch(5))
    assert e.value.code == ErrorCode.out_of_order_sequence_number


def test_old_epoch_is_fenced_and_new_epoch_restarts_at_zero() -> None:
    table = ProducerStateTable()
    table.record(_batch(0, epoch=1), 0)
    with pytest.raises(SequenceError) as e:
        table.check(_batch(2, epoch=0))
    assert e.value.code == ErrorCode.invalid_producer_epoch
    with pytest.raises(SequenceError):
        table.check(_batch(2, epoch=2))
    assert table.check(_batch(0, epoch=2)) is None


def test_unknown_producer_and_non_idempotent_batches_pass() -> None:
    table = ProducerStateTable()
    assert table.check(_batch(40)) is None
    assert table.check(header_of(make_batch([b"x"]))) is None


def test_table_is_bounded() -> None:
    table = ProducerStateTable(producers_max=3)
    for pid in range(10):
        table.record(_batch(0, pid=pid), pid)
    assert len(table) == 3
