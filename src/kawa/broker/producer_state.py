"""Idempotent-producer bookkeeping for one partition (sans-IO).

Rules, per producer id (as in Kafka's ProducerStateManager):

* A batch without a producer id (-1) is not checked.
* epoch < known epoch          -> INVALID_PRODUCER_EPOCH; nothing written.
* epoch > known epoch          -> the producer restarted its sequence: the batch
                                  must start at sequence 0.
* same epoch, batch equals one of the last 5 batches (first and last
  sequence)                    -> duplicate: acknowledged with the original
                                  base offset, nothing written.
* same epoch, first sequence == last sequence + 1 (mod 2^31) -> accepted.
* otherwise                    -> OUT_OF_ORDER_SEQUENCE_NUMBER; nothing written.
* an unknown producer id is accepted at any sequence: its state may have been
  lost with a broker restart or expired, and refusing would fail the producer
  for no fault of its own.

The table is bounded (``producers_max``); the least recently used producer is
forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from kawa.protocol.recordbatch import NO_PRODUCER_ID, BatchHeader

RECENT_BATCHES_PER_PRODUCER = 5  # librdkafka and Java keep at most 5 in flight


class SequenceError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Producer:
    epoch: int
    last_sequence: int
    # (first_sequence, last_sequence, base_offset) of recent batches.
    recent: deque[tuple[int, int, int]] = field(
        default_factory=lambda: deque(maxlen=RECENT_BATCHES_PER_PRODUCER)
    )


class ProducerStateTable:
    def __init__(self, producers_max: int = 10_000) -> None:
        assert producers_max > 0
        self._producers: OrderedDict[int, _Producer] = OrderedDict()
        self._producers_max = producers_max

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, header: BatchHeader) -> int | None:
        """Return the original base offset if `header` is a duplicate, None if new.

        Raises SequenceError if the batch must be refused.
        """
        if header.producer_id == NO_PRODUCER_ID or header.base_sequence < 0:
            return None
        producer = self._producers.get(header.producer_id)
        if producer is None:
            return None
        if header.producer_epoch < producer.epoch:
            raise SequenceError(
                ErrorCode.invalid_producer_epoch,
                f"producer {header.producer_id} epoch {header.producer_epoch} "
                f"< current {producer.epoch}",
            )
        if header.producer_epoch > producer.epoch:
            if header.base_sequence != 0:
                raise SequenceError(
                    ErrorCode.out_of_order_sequence_number,
                    f"new epoch {header.producer_epoch} must start at sequence 0",
                )
            return None
        for first, last, base_offset in producer.recent:
            if first == header.base_sequence and last == header.last_sequence:
                return base_offset
        expected = (producer.last_sequence + 1) & 0x7FFFFFFF
        if header.base_sequence != expected:
            raise SequenceError(
                ErrorCode.out_of_order_sequence_number,
                f"producer {header.producer_id} sent sequence {header.base_sequence}, "
                f"expected {expected}",
            )
        return None

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an accepted batch (call after a successful append)."""
        if header.producer_id == NO_PRODUCER_ID or header.base_sequence < 0:
            return
        producer = self._producers.get(header.producer_id)
        if producer is None or header.producer_epoch != producer.epoch:
            producer = _Producer(header.producer_epoch, -1)
            self._producers[header.producer_id] = producer
        self._producers.move_to_end(header.producer_id)
        producer.last_sequence = header.last_sequence
        producer.recent.append((header.base_sequence, header.last_sequence, base_offset))
        while len(self._producers) > self._producers_max:
            self._producers.popitem(last=False)
