"""Protocol fuzzing against ONE live broker process (module-scoped).

What must hold whatever arrives on the socket: the broker stays up, logs no
Python traceback (a traceback is an unhandled bug; refusals are one-line
WARNINGs), refuses a frame it cannot decode by closing only that connection,
answers damaged record batches with the right error code without writing any
part of them, and afterwards still serves a normal confluent-kafka client.

The frames (see fuzzing.py): (a) random bytes; (b) valid requests of every
served API key/version, encoded with kio and then mutated by hypothesis-drawn
or seeded-random mutation plans; (c) Produce requests with damaged batches.
Volume (>= 100,000 frames) comes from a seeded random.Random loop; hypothesis
explores (and would shrink) mutation plans and batch damage.

Two broker bugs this fuzzing found have regression tests in "malformed frames"
below: an array length larger than the frame (kio reserved memory for it up
front and the process aborted) and a null for an array that cannot be null
(the handler raised TypeError). Both frames must now close only their
connection with a WARNING naming the field. The fuzzers hold nothing back:
every generated frame is sent.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass

import fuzzing as fz
import kclients
import pytest
import rawclient as rc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kawaproc import STORAGE, KawaProcess

FUZZ_TOPIC = "fuzz-t"
DAMAGE_TOPIC = "fuzz-damage"
PARTITIONS = 2
VOLUME_FRAMES = 100_000
VOLUME_TIME_LIMIT_S = 420.0
VOLUME_SEED = int(os.environ.get("KAWA_FUZZ_SEED", "20240917"))
# As a container limit would: a too-large allocation then fails the same way on every host.
MEMORY_LIMIT_BYTES = 4 << 30
REQUEST_SIZE_MAX = 100 * 1024 * 1024  # kawa's default request_size_bytes_max

HYPOTHESIS = settings(
    deadline=None,
    database=None,  # write nothing into the repository
    derandomize=True,  # the same examples on every run; change code or seed to explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)


@dataclass
class FuzzEnv:
    broker: KawaProcess
    topic_id: uuid.UUID
    samples: list[fz.Sample]

    def assert_healthy(self, mark: int = 0) -> None:
        assert self.broker.alive(), (
            f"broker died (exit {self.broker.proc.returncode}):\n{self.broker.log_text()[-3000:]}")
        text = self.broker.log_since(mark)
        at = text.find("Traceback")
        assert at == -1, f"broker logged a traceback:\n{text[max(0, at - 300): at + 3000]}"


@pytest.fixture(scope="module")
def env(spawn_module_broker) -> FuzzEnv:
    broker = spawn_module_broker("--storage", STORAGE, name="fuzz",
                                 memory_limit_bytes=MEMORY_LIMIT_BYTES)
    with rc.RawConnection(broker.host, broker.port) as conn:
        versions = conn.request(rc.api_versions_request(3)).api_keys
        fz.use_served({k.api_key: (k.min_version, k.max_version) for k in versions})
        rc.create_topic(conn, FUZZ_TOPIC, PARTITIONS)
        rc.create_topic(conn, DAMAGE_TOPIC, PARTITIONS)
        topic_id = conn.request(rc.metadata_request([FUZZ_TOPIC], 12)).topics[0].topic_id
    return FuzzEnv(broker, topic_id, fz.build_samples(FUZZ_TOPIC, topic_id, PARTITIONS))


@pytest.fixture
def conn(env):
    with rc.RawConnection(env.broker.host, env.broker.port) as c:
        yield c


# --------------------------------------------------------------------------- the corpus
@pytest.mark.timeout(60)
def test_samples_cover_every_served_api_version(env, conn):
    """The fuzz corpus starts from a valid request of every (api_key, version) the broker
    advertises (hand-written for the core APIs, generic for the others)."""
    response = conn.request(rc.api_versions_request(3))
    advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert advertised == fz.SERVED  # what the generators draw api keys/versions from
    covered = {(s.api_key, s.version) for s in env.samples}
    wanted = {(k, v) for k, (lo, hi) in fz.SERVED.items() for v in range(lo, hi + 1)}
    assert covered == wanted


@pytest.mark.timeout(120)
def test_every_sample_request_is_answered(env, conn):
    """Unmutated, every sample decodes and is answered on the same open connection."""
    mark = env.broker.log_mark()
    for sample in env.samples:
        correlation_id = conn.next_correlation_id()
        conn.send(rc.request_frame(sample.entity, correlation_id))
        got, _ = rc.decode_response(sample.api_key, sample.version, conn.recv_frame())
        assert got == correlation_id, sample.name
    assert "closing connection" not in env.broker.log_since(mark)
    env.assert_healthy(mark)


# --------------------------------------------------------------------------- size prefixes
@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [-1, -(2**31), 0, REQUEST_SIZE_MAX + 1, 2**31 - 1],
                         ids=["minus1", "int32-min", "zero", "limit+1", "int32-max"])
def test_invalid_size_prefix_closes_connection(env, conn, size):
    mark = env.broker.log_mark()
    with rc.RawConnection(env.broker.host, env.broker.port) as bystander:
        conn.send(struct.pack(">i", size) + b"\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff")
        assert conn.wait_closed(5.0), f"connection still open after size prefix {size}"
        assert env.broker.wait_for_log(f"frame size {size} outside", mark)
        # Only the offending connection goes.
        assert bystander.request(rc.api_versions_request(0)).error_code == rc.NONE
    env.assert_healthy(mark)


@pytest.mark.timeout(60)
def test_size_prefix_at_the_limit_waits_for_the_body(env, conn):
    """request_size_bytes_max itself is allowed: the broker waits for the rest."""
    conn.send(struct.pack(">i", REQUEST_SIZE_MAX) + b"\x00\x12\x00\x00")
    assert conn.is_open(0.5)


# --------------------------------------------------------------------------- damaged batches
def check_damaged_produce(conn: rc.RawConnection, partition: int, batch: bytes, damage: str,
                          version: int = 9) -> None:
    """The damaged batch is refused with the right code and nothing of it is written:
    the high watermark stays, and the next valid batch lands exactly there."""
    before = rc.high_watermark(conn, DAMAGE_TOPIC, partition)
    response = rc.produce_one(conn, DAMAGE_TOPIC, partition, batch, version)
    assert response.error_code in fz.expected_batch_errors(damage), (
        f"{damage}: error {response.error_code!r} ({response.error_message}), "
        f"expected one of {fz.expected_batch_errors(damage)}")
    assert rc.high_watermark(conn, DAMAGE_TOPIC, partition) == before, f"{damage}: HW moved"
    good = rc.produce_one(conn, DAMAGE_TOPIC, partition, bytes(rc.record_batch([b"after"])))
    assert good.error_code == rc.NONE and good.base_offset == before
    fetched = rc.fetch_partition(conn, DAMAGE_TOPIC, partition, before)
    assert list(rc.decode_batches(fetched.records)) == [(before, b"after")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", fz.BATCH_DAMAGE)
def test_damaged_batch_is_refused_and_nothing_written(env, conn, damage):
    mark = env.broker.log_mark()
    batch = fz.damage_batch(rc.record_batch([b"one", b"two", b"three"]), damage, 7)
    check_damaged_produce(conn, 0, bytes(batch), damage)
    env.assert_healthy(mark)


@pytest.mark.timeout(300)
@settings(HYPOTHESIS, max_examples=300)
@given(
    damage=st.sampled_from(fz.BATCH_DAMAGE),
    amount=st.integers(1, 400),
    values=st.lists(st.binary(max_size=60), min_size=2, max_size=8),
    version_pick=st.integers(0, 100),
    partition=st.integers(0, PARTITIONS - 1),
)
def test_damaged_batches_property(env, damage, amount, values, version_pick, partition):
    low, high = fz.SERVED[rc.PRODUCE]
    version = low + version_pick % (high - low + 1)
    mark = env.broker.log_mark()
    batch = fz.damage_batch(rc.record_batch(values), damage, amount)
    with rc.RawConnection(env.broker.host, env.broker.port) as conn:
        check_damaged_produce(conn, partition, bytes(batch), damage, version)
    env.assert_healthy(mark)


# --------------------------------------------------------------------------- mutation plans
_positions = st.integers(0, 1 << 16)
_mutations = st.one_of(
    st.tuples(st.just("flip"), _positions, st.integers(0, 7)),
    st.tuples(st.just("set"), _positions,
              st.sampled_from(fz.INTERESTING_BYTES) | st.integers(0, 255)),
    st.tuples(st.just("truncate"), _positions),
    st.tuples(st.just("insert"), _positions, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), _positions, st.integers(1, 32)),
    st.tuples(st.just("huge"), st.integers(0, 63), st.integers(0, 63)),
    st.tuples(st.just("header"), st.integers(0, 70), st.integers(-1, 20)),
    st.tuples(st.just("header"), st.integers(-(2**15), 2**15 - 1),
              st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just("splice"), _positions, _positions, st.integers(1, 64)),
)
_plans = st.lists(_mutations, min_size=1, max_size=5).map(tuple)


@pytest.fixture(scope="module")
def probe(env):
    p = fz.Probe(env.broker.host, env.broker.port)
    yield p
    p.close()


@pytest.mark.timeout(600)
@settings(HYPOTHESIS, max_examples=5000)
@given(index=st.integers(min_value=0), other=st.integers(min_value=0), plan=_plans)
def test_mutation_plans_property(env, probe, index, other, plan):
    """Any mutation plan applied to any sample: the broker answers past the frame or
    closes that connection, stays up, and logs no traceback."""
    sample = env.samples[index % len(env.samples)]
    payload = fz.apply_plan(sample.payload, plan, sample,
                            env.samples[other % len(env.samples)].payload)
    mark = env.broker.log_mark()
    outcome = probe.send(payload)
    if outcome == "timeout":
        # Only a fetch (long poll) or a group join/sync (rebalance) may hold its answer.
        assert struct.unpack_from(">h", payload)[0] in fz.MAY_HOLD, (
            f"no answer and no close for {sample.name} with plan {plan}")
    env.assert_healthy(mark)


# --------------------------------------------------------------------------- malformed frames
# Regression tests for two bugs the fuzzers found, both fixed by validating every
# frame against its schema before kio decodes it.


@pytest.fixture(scope="module")
def strict(spawn_module_broker) -> KawaProcess:
    """A broker of its own, so that a regression here does not take `env` down with it;
    with the memory limit a container would set (an over-allocation fails the same way
    on every host)."""
    return spawn_module_broker("--storage", STORAGE, name="strict",
                               memory_limit_bytes=MEMORY_LIMIT_BYTES)


def assert_refused(broker: KawaProcess, payload: bytes, field: str) -> None:
    """The broker closes the connection that sent `payload` after answering what came
    before it, logs one WARNING naming `field`, logs no traceback, stays up, and keeps
    serving a connection opened before and one opened after."""
    api_key, version = struct.unpack_from(">hh", payload)
    mark = broker.log_mark()
    with rc.RawConnection(broker.host, broker.port) as bystander, \
            rc.RawConnection(broker.host, broker.port) as conn:
        peer = "{}:{}".format(*conn.sock.getsockname())
        # Pipelined: a good request, the bad frame, another good request.
        conn.send(rc.request_frame(rc.api_versions_request(0), 1) + rc.frame(payload)
                  + rc.request_frame(rc.api_versions_request(0), 3))
        correlation_id, response = rc.decode_response(rc.API_VERSIONS, 0, conn.recv_frame())
        assert correlation_id == 1 and response.error_code == rc.NONE
        # Nothing after the bad frame is answered: the connection just closes.
        with pytest.raises(rc.ConnectionClosed):
            got = conn.recv_frame(5.0)
            pytest.fail(f"answered past the malformed frame: {got[:40]!r}")
        line = (f"closing connection from {peer}: malformed API key {api_key} v{version}: "
                f"{field}: ")
        assert broker.wait_for_log(line, mark), (
            f"no {line!r} in the log:\n{broker.log_since(mark)[-1500:]}")
        assert broker.alive(), f"broker died:\n{broker.log_text()[-1500:]}"
        assert bystander.request(rc.api_versions_request(3)).error_code == rc.NONE
    with rc.RawConnection(broker.host, broker.port) as fresh:
        assert fresh.request(rc.metadata_request([], 9)).brokers
    text = broker.log_since(mark)
    assert "Traceback" not in text, text[-1500:]
    assert text.count("closing connection") == 1, text[-1500:]


def _huge_array_frames() -> list:
    flexible = rc.encode_request(rc.metadata_request([], 9), 1)
    # Metadata v9 body: compact array `topics` (uvarint 1 = empty), then the rest.
    header = len(flexible) - len(rc.encode_body(rc.metadata_request([], 9)))
    assert flexible[header] == 0x01
    legacy = rc.encode_request(rc.metadata_request([], 1), 1)
    legacy_header = len(legacy) - len(rc.encode_body(rc.metadata_request([], 1)))
    nested = [  # (api_key, version, dotted path of the array, declared length)
        (rc.PRODUCE, 9, "topic_data.partition_data", 2**31),
        (rc.PRODUCE, 3, "topic_data.partition_data", 2**31 - 1),
        (rc.FETCH, 12, "topics.partitions", 2**32 - 2),
        (rc.DESCRIBE_CONFIGS, 4, "resources.configuration_keys", 2**31),  # of strings
        (rc.DESCRIBE_CONFIGS, 1, "resources.configuration_keys", 2**30),
        (rc.CREATE_TOPICS, 5, "topics.configs", 1 << 22),
    ]
    out = [
        pytest.param(flexible[:header] + b"\xff\xff\xff\xff\x0f" + flexible[header + 1:],
                     "topics", id="MetadataRequestv9.topics-compact-2^32-2"),
        pytest.param(legacy[:legacy_header] + struct.pack(">i", 2**31 - 1),
                     "topics", id="MetadataRequestv1.topics-int32-2^31-1"),
        # Just one element more than there are bytes left.
        pytest.param(flexible[:header] + bytes([len(flexible) - header + 1])
                     + flexible[header + 1:], "topics", id="MetadataRequestv9.topics-left+1"),
    ]
    for api_key, version, path, length in nested:
        entity = fz.generic_request(rc.request_class(api_key, version), "t", uuid.uuid4())
        out.append(pytest.param(fz.with_array_length(entity, path, length),
                                path.rsplit(".", 1)[-1],
                                id=f"{type(entity).__name__}v{version}.{path}-{length}"))
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("payload,field", _huge_array_frames())
def test_huge_array_length_is_refused_not_fatal(strict, payload, field):
    """Fixed bug: kio's native decoder reserved 8 bytes per declared array element
    before checking the frame held them, so a 5-byte array length made the broker
    allocate 16-34 GiB and the process aborted ('memory allocation of N bytes
    failed'). Now the array length is checked against the bytes left first."""
    assert_refused(strict, payload, field)


def _null_array_frames() -> list:
    """A request of each API with a non-nullable array made null (int32 -1, or compact
    length 0) while everything else stays well-formed. Every top-level one of these
    made kawa's handler raise TypeError before the fix."""
    wanted = [(rc.PRODUCE, 9, "topic_data"), (rc.FETCH, 11, "topics"),
              (rc.LIST_OFFSETS, 5, "topics"), (rc.CREATE_TOPICS, 5, "topics"),
              (rc.DELETE_TOPICS, 4, "topic_names"), (rc.DELETE_RECORDS, 2, "topics"),
              (rc.DESCRIBE_CONFIGS, 4, "resources"), (rc.CREATE_PARTITIONS, 3, "topics"),
              (rc.INCREMENTAL_ALTER_CONFIGS, 1, "resources"),
              # consumer groups
              (8, 8, "topics"), (9, 8, "groups"), (10, 4, "coordinator_keys"),
              (11, 5, "protocols"), (13, 3, "members"), (14, 3, "assignments"),
              (15, 5, "groups"), (16, 4, "states_filter"), (42, 2, "groups_names"),
              (47, 0, "topics"),
              # nested, flexible and not
              (rc.PRODUCE, 9, "topic_data.partition_data"),
              (rc.PRODUCE, 3, "topic_data.partition_data"),
              (rc.FETCH, 4, "topics.partitions"),
              (rc.LIST_OFFSETS, 6, "topics.partitions"),
              (rc.CREATE_TOPICS, 5, "topics.assignments")]
    out = []
    for api_key, version, path in wanted:
        entity = fz.generic_request(rc.request_class(api_key, version), "t", uuid.uuid4())
        out.append(pytest.param(fz.with_null_array(entity, path), path.rsplit(".", 1)[-1],
                                id=f"{type(entity).__name__}v{version}.{path}"))
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("payload,field", _null_array_frames())
def test_null_array_is_refused_without_traceback(strict, payload, field):
    """Fixed bug: a null for a non-nullable array decoded to None and the handler
    iterated it (TypeError traceback logged at ERROR, connection closed as 'internal
    error'). Now it is a decode refusal naming the field."""
    assert_refused(strict, payload, field)


# --------------------------------------------------------------------------- volume
@pytest.mark.timeout(600)
def test_volume_fuzz_100k_frames(env):
    """>= 100,000 random/mutated/damaged frames, pipelined over 4 connections."""
    mark = env.broker.log_mark()
    source = fz.FrameSource(env.samples, (FUZZ_TOPIC, PARTITIONS), VOLUME_SEED)
    pipeline = fz.Pipeline(env.broker.host, env.broker.port, connections=4, window=8)
    try:
        stats = pipeline.run(source.next, VOLUME_FRAMES, VOLUME_TIME_LIMIT_S)
    finally:
        pipeline.close()
    log = env.broker.log_since(mark)
    # The frames of the two fixed bugs are among those sent (nothing is held back);
    # the guard refuses them with these words.
    fixed = {bug: log.count(words) for bug, words in (
        ("oversized array", " elements declared with "),
        ("null array", ": null, but the field is not nullable"))}
    summary = (f"{stats}; generated by family {source.counts}; "
               f"refusals of formerly fatal frames {fixed}")
    print(summary)
    assert stats.delivered >= VOLUME_FRAMES, f"only {stats.delivered} frames delivered: {summary}"
    # Both kinds of answer happened, so the fuzz reached past the decoder too.
    assert stats.answered > 10_000 and stats.closed_by_broker > 10_000, summary
    assert all(fixed.values()), summary
    env.assert_healthy(mark)
    kclients.assert_round_trip(env.broker.bootstrap, kclients.unique("after-volume"))


@pytest.mark.timeout(120)
def test_broker_still_serves_normal_clients(env):
    """Last in this module: after everything above, the same process serves a client."""
    kclients.assert_round_trip(env.broker.bootstrap, kclients.unique("after-fuzz"))
    env.assert_healthy()
