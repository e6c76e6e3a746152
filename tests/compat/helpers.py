"""Helpers shared by the compatibility tests: topic admin, confluent produce/consume
with bounded waits, log assertions and kcat invocation."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

DEADLINE_S = 30.0  # default bound for any wait on the broker
KCAT = "/usr/bin/kcat"

# A fixed, clearly-not-"now" base so that a broker that overwrites CreateTime with its
# own clock (or drops milliseconds) is caught.
TS_BASE = 1_600_000_000_123


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Rec:
    """One record as stored in a partition."""
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    timestamp: int | None = None  # CreateTime in ms; None in an expectation: not checked
    partition: int | None = None
    offset: int | None = None

    def content(self, with_timestamp: bool = True):
        return (self.key, self.value, self.headers, self.timestamp if with_timestamp else None)


def norm_headers(headers) -> tuple:
    """Normalise client header representations to a tuple of (str, bytes|None)."""
    if not headers:
        return ()
    return tuple((k.decode() if isinstance(k, bytes) else k,
                  None if v is None else bytes(v)) for k, v in headers)


def assert_partition_log(got: Sequence[Rec], expected: Sequence[Rec], first_offset: int = 0,
                         check_timestamps: bool = True, where: str = "") -> None:
    """``got`` must be exactly ``expected``, in order, at offsets first_offset, +1, +2, ..."""
    label = f"[{where}] " if where else ""
    offsets = [r.offset for r in got]
    want_offsets = list(range(first_offset, first_offset + len(got)))
    if offsets != want_offsets:
        bad = next(i for i, (a, b) in enumerate(zip(offsets, want_offsets)) if a != b)
        raise AssertionError(f"{label}offsets not contiguous from {first_offset}: position {bad} "
                             f"has offset {offsets[bad]}, expected {want_offsets[bad]} "
                             f"(around: {offsets[max(0, bad - 3):bad + 3]})")
    for i, (g, e) in enumerate(zip(got, expected)):
        with_ts = check_timestamps and e.timestamp is not None
        if g.content(with_ts) != e.content(with_ts):
            raise AssertionError(f"{label}record at offset {g.offset} (position {i}) differs:\n"
                                 f"  got      {g.content(with_ts)!r:.300}\n"
                                 f"  expected {e.content(with_ts)!r:.300}")
    assert len(got) == len(expected), (
        f"{label}partition holds {len(got)} records, expected {len(expected)}")


def by_partition(records: Iterable[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


# --------------------------------------------------------------------------- admin
def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_for_topic(bootstrap: str, topic: str, partitions: int | None = None,
                   timeout: float = DEADLINE_S) -> None:
    """Until metadata shows ``topic`` (with ``partitions`` partitions, each with a leader)."""
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(timeout=5)
        t = md.topics.get(topic)
        last = t
        if t is not None and t.error is None and t.partitions and (
                partitions is None or (len(t.partitions) == partitions and all(
                    p.leader >= 0 and p.error is None for p in t.partitions.values()))):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not visible with {partitions} partitions within "
                         f"{timeout}s; last metadata: {last and (last.error, last.partitions)}")


def wait_topic_absent(bootstrap: str, topic: str, timeout: float = DEADLINE_S) -> None:
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topic not in a.list_topics(timeout=5).topics:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} still in metadata {timeout}s after deletion")


def create_topic(bootstrap: str, topic: str | None = None, partitions: int = 1,
                 config: dict[str, str] | None = None, timeout: float = DEADLINE_S) -> str:
    topic = topic or unique_topic()
    a = admin(bootstrap)  # keep the client alive until the future resolves
    fut = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=timeout)[topic]
    fut.result(timeout=timeout)
    wait_for_topic(bootstrap, topic, partitions, timeout)
    return topic


def topic_config(bootstrap: str, topic: str, timeout: float = DEADLINE_S) -> dict:
    """name -> ConfigEntry, as returned by DescribeConfigs."""
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bootstrap)
    return a.describe_configs([res], request_timeout=timeout)[res].result(timeout)


# --------------------------------------------------------------------------- produce
@dataclass
class Delivery:
    err: KafkaError | None
    partition: int
    offset: int
    timestamp: int
    tstype: int


@dataclass
class ProduceResult:
    sent: list[Rec] = field(default_factory=list)       # in produce() order, with partition
    deliveries: list[Delivery] = field(default_factory=list)  # same order as ``sent``

    def errors(self) -> list[KafkaError]:
        return [d.err for d in self.deliveries if d.err is not None]


def make_producer(bootstrap: str, conf: dict | None = None) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(conf or {})})


def confluent_produce(bootstrap: str, topic: str, records: Sequence[Rec],
                      conf: dict | None = None, timeout: float = DEADLINE_S,
                      producer: Producer | None = None) -> ProduceResult:
    """Produce ``records`` (their partition/timestamp are honoured if set) and flush.

    Every record's delivery report is collected; the returned ``sent`` carries the
    partition the producer actually chose (from the delivery report). Pass ``producer``
    to keep using (and keep open) a producer of your own; ``conf`` is then ignored.
    """
    p = producer if producer is not None else make_producer(bootstrap, conf)
    n = len(records)
    reports: list[Delivery | None] = [None] * n

    def make_cb(i):
        def cb(err, msg):
            ts_type, ts = msg.timestamp()
            reports[i] = Delivery(err, msg.partition(), msg.offset(), ts, ts_type)
        return cb

    for i, r in enumerate(records):
        kwargs = {"key": r.key, "value": r.value, "on_delivery": make_cb(i)}
        if r.headers:
            kwargs["headers"] = list(r.headers)
        if r.partition is not None:
            kwargs["partition"] = r.partition
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} records still undelivered after {timeout}s flush"
    missing = [i for i, d in enumerate(reports) if d is None]
    assert not missing, f"no delivery report for {len(missing)} records (first {missing[:5]})"
    res = ProduceResult()
    for r, d in zip(records, reports):
        res.sent.append(Rec(r.key, r.value, r.headers, r.timestamp, d.partition))
        res.deliveries.append(d)
    return res


def assert_deliveries(res: ProduceResult, first_offsets: dict[int, int] | None = None) -> None:
    """No delivery errors; per partition the reported offsets are contiguous in produce
    order; reported CreateTime equals the timestamp we set (when we set one)."""
    errs = res.errors()
    assert not errs, f"{len(errs)} of {len(res.deliveries)} deliveries failed, first: {errs[0]}"
    next_off = dict(first_offsets or {})
    for i, (r, d) in enumerate(zip(res.sent, res.deliveries)):
        want = next_off.get(d.partition, 0)
        assert d.offset == want, (f"record #{i} acknowledged at {d.partition}/{d.offset}, "
                                  f"expected offset {want}")
        next_off[d.partition] = want + 1
        if r.timestamp is not None:
            assert (d.tstype, d.timestamp) == (TIMESTAMP_CREATE_TIME, r.timestamp), (
                f"record #{i}: delivery report timestamp {(d.tstype, d.timestamp)}, "
                f"sent {r.timestamp}")


# --------------------------------------------------------------------------- consume
def confluent_consumer(bootstrap: str, **conf) -> Consumer:
    # group.id is required by librdkafka, but nothing here uses the group: only assign().
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("compat-g"),
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "auto.offset.reset": "earliest", **conf})


def confluent_consume(bootstrap: str, topic: str, expected: dict[int, int],
                      start: dict[int, int] | None = None, deadline_s: float = DEADLINE_S,
                      conf: dict | None = None, settle_s: float = 0.0) -> dict[int, list[Rec]]:
    """Assign partitions of ``expected`` (partition -> record count) from ``start``
    (default: beginning) and read until each has at least that many records.

    After the counts are reached, keep reading for ``settle_s`` to catch extra records.
    Fails with the per-partition counts if the deadline passes first.
    """
    c = confluent_consumer(bootstrap, **(conf or {}))
    start = start or {}
    got: dict[int, list[Rec]] = {p: [] for p in expected}
    try:
        c.assign([TopicPartition(topic, p, start.get(p, OFFSET_BEGINNING)) for p in expected])
        deadline = time.monotonic() + deadline_s
        settle_until = None
        while True:
            now = time.monotonic()
            done = all(len(got[p]) >= n for p, n in expected.items())
            if done and settle_until is None:
                settle_until = now + settle_s
            if done and now >= settle_until:
                break
            if now > deadline:
                counts = {p: len(v) for p, v in got.items()}
                raise AssertionError(f"consumed {counts} from {topic} within {deadline_s}s, "
                                     f"expected {expected}")
            for m in c.consume(num_messages=10_000, timeout=0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                ts_type, ts = m.timestamp()
                assert ts_type == TIMESTAMP_CREATE_TIME, (
                    f"offset {m.offset()} p{m.partition()}: timestamp type {ts_type}, "
                    f"expected CreateTime")
                got.setdefault(m.partition(), []).append(
                    Rec(m.key(), m.value(), norm_headers(m.headers()), ts, m.partition(),
                        m.offset()))
    finally:
        c.close()
    return got


def watermarks(bootstrap: str, topic: str, partition: int, timeout: float = 10) -> tuple[int, int]:
    c = confluent_consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout,
                                       cached=False)
    finally:
        c.close()


def assert_topic_holds(bootstrap: str, topic: str, sent: Sequence[Rec], partitions: int,
                       check_timestamps: bool = True, deadline_s: float = DEADLINE_S,
                       first_offsets: dict[int, int] | None = None) -> dict[int, list[Rec]]:
    """Read the whole topic with confluent-kafka and assert each partition holds exactly
    the records of ``sent`` routed to it, in order, at contiguous offsets, and that the
    watermarks are (first offset, right after the last record)."""
    first_offsets = first_offsets or {}
    want = by_partition(sent)
    expected = {p: len(want.get(p, [])) for p in range(partitions)}
    got = confluent_consume(bootstrap, topic, expected, deadline_s=deadline_s)
    for p in range(partitions):
        assert_partition_log(got[p], want.get(p, []), first_offsets.get(p, 0),
                             check_timestamps, where=f"{topic}/{p}")
    for p in range(partitions):
        first = first_offsets.get(p, 0)
        wm = watermarks(bootstrap, topic, p)
        assert wm == (first, first + expected[p]), (
            f"{topic}/{p}: (low, high) watermarks {wm}, expected {(first, first + expected[p])}")
    return got


# --------------------------------------------------------------------------- kcat
def run_kcat(args: Sequence[str], input: bytes | None = None,
             timeout: float = DEADLINE_S) -> subprocess.CompletedProcess:
    """Run kcat; raise with its stderr on a non-zero exit or timeout."""
    try:
        cp = subprocess.run([KCAT, *args], input=input, capture_output=True, timeout=timeout,
                            check=False)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kcat {' '.join(args)} timed out after {timeout}s; stderr:\n"
                             f"{(e.stderr or b'').decode(errors='replace')[-3000:]}") from None
    if cp.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} exited {cp.returncode}; stderr:\n"
                             f"{cp.stderr.decode(errors='replace')[-3000:]}")
    return cp


# --------------------------------------------------------------------------- payloads
def sample_records(n: int, prefix: str = "r", with_headers: bool = True,
                   ts_step: int = 1, partitions: int | None = None,
                   null_header_values: bool = True) -> list[Rec]:
    """Deterministic, varied records: keys, null/empty keys and values, headers
    (incl. duplicate names and null values), distinct explicit timestamps.
    ``partitions``: spread round-robin over that many; None leaves it to the partitioner."""
    out = []
    for i in range(n):
        if i % 97 == 5:
            key = None
        elif i % 89 == 7:
            key = b""
        else:
            key = f"{prefix}-k{i}".encode()
        if i % 83 == 11:
            value = None  # tombstone
        elif i % 79 == 13:
            value = b""
        else:
            value = f"{prefix}-v{i}-".encode() + bytes([i % 256]) * (i % 50)
        headers: tuple = ()
        if with_headers and i % 3 == 0:
            headers = (("h1", f"a{i}".encode()), ("h2", None if null_header_values else b""),
                       ("h1", b"dup"))
        elif with_headers and i % 3 == 1:
            headers = (("trace-id", uuid.UUID(int=i).bytes),)
        part = None if partitions is None else i % partitions
        out.append(Rec(key, value, headers, TS_BASE + i * ts_step, part))
    return out

