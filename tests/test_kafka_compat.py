"""stream.kafka_compat reaches into faust-streaming's and aiokafka's private internals. It was
written against the versions it pins: an upgrade must fail here until someone has re-read it
(and the integration tests of the fetch guard and the seek fix have run on the new versions)."""

from __future__ import annotations

from stream import kafka_compat


def test_installed_faust_and_aiokafka_are_the_versions_the_internals_were_written_against():
    assert kafka_compat.installed_versions() == kafka_compat.PINNED, (
        "faust-streaming or aiokafka changed: re-read stream/kafka_compat.py against the new sources, "
        "run tests/integration/test_codecs.py and test_scaleout.py, then update PINNED")


def test_the_private_attributes_used_still_exist():
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers import aiokafka as faust_kafka

    for name in ("_create_fetch_waiter", "_notify", "fetched_records"):
        assert callable(getattr(Fetcher, name, None)), name
    assert callable(getattr(faust_kafka.AIOKafkaConsumerThread, "_fetch_records", None))
    assert callable(getattr(faust_kafka.Consumer, "perform_seek", None))
    assert callable(getattr(faust_kafka.Consumer, "getmany", None))
    assert "_committed_offset" in faust_kafka.Consumer.__init__.__code__.co_names or \
        "_committed_offset" in open(faust_kafka.__file__.replace("drivers/aiokafka.py", "consumer.py")).read()


def test_an_agents_error_handler_is_the_one_set():
    import faust

    from stream.kafka_compat import set_on_error

    app = faust.App("compat-test", autodiscover=False, broker="kafka://127.0.0.1:1")

    @app.agent()
    async def noop(stream):
        async for _ in stream:
            pass

    async def handler(agent, exc):
        pass

    set_on_error(noop, handler)
    assert noop._on_error is handler


def test_input_offsets_commit_only_below_the_first_message_not_done():
    from stream.commits import InputOffsets

    o = InputOffsets()
    o.sought("p0", 10)
    for off in range(10, 16):
        o.delivered("p0", off)
    assert o.committable() == {}  # nothing done
    for off in (10, 11, 13, 14):  # 12 is still being stored
        o.done("p0", off)
    assert o.committable() == {"p0": 12}
    o.committed({"p0": 12})
    assert o.committable() == {}
    o.done("p0", 12)
    assert o.committable() == {"p0": 15}
    o.done("p0", 15)
    assert o.committable() == {"p0": 16}


def test_input_offsets_never_pass_what_was_not_delivered_since_the_seek():
    from stream.commits import InputOffsets

    o = InputOffsets()
    o.delivered("p0", 5)  # before any seek: where it starts is unknown
    o.done("p0", 5)
    assert o.committable() == {}
    o.sought("p0", 100)
    for off in (100, 101, 102):
        o.delivered("p0", off)
    # an old generation's batch finishes 101..140 after the seek: only 101, delivered again, counts
    for off in range(101, 141):
        o.done("p0", off)
    assert o.committable() == {}  # 100 is not done
    o.done("p0", 100)
    assert o.committable() == {"p0": 103}  # not 141: 103..140 were not delivered since the seek
    o.revoked(["p0"])
    assert o.committable() == {}


def test_input_offsets_skip_what_the_log_does_not_hold():
    from stream.commits import InputOffsets

    o = InputOffsets()
    o.sought("p1", 0)
    for off in (0, 1, 3, 4):  # offset 2 is a transaction marker: never delivered
        o.delivered("p1", off)
        o.done("p1", off)
    o.delivered("p1", 3)  # a re-delivery is not waited for again
    assert o.committable() == {"p1": 5}


def test_input_offsets_read_again_records_that_were_not_delivered():
    from stream.commits import InputOffsets

    gaps = []
    o = InputOffsets(on_gap=lambda *a: gaps.append(a))
    o.sought("p0", 1248)
    # 1248..1396 not delivered after the seek, 1397 was (the chaos run's loss): read again from 1248
    assert o.delivered("p0", 1397) == 1248 and gaps == [("p0", 1248, 1397, True)]
    assert o.committable() == {}
    for off in range(1248, 1400):  # the fresh fetch from 1248
        assert o.delivered("p0", off) is None
        o.done("p0", off)
    assert o.committable() == {"p0": 1400}
    # a jump seen again after reading from its first offset: the log does not hold them
    assert o.delivered("p0", 1500) == 1400
    assert o.delivered("p0", 1500) is None and gaps[-1] == ("p0", 1400, 1500, False)
    o.done("p0", 1500)
    assert o.committable() == {"p0": 1501}


def test_input_offsets_hold_where_a_partition_cannot_be_read_again():
    from stream.commits import InputOffsets

    o = InputOffsets()
    o.sought("p0", 10)
    assert o.delivered("p0", 20) == 10
    o.held("p0", 10)
    assert o.delivered("p0", 20) is None
    o.done("p0", 20)
    assert o.committable() == {} and o.holds() == {"p0": 10}
    o.sought("p0", 10)
    assert o.holds() == {}


def _faust_offsets(committed):
    """The bookkeeping faust.transport.consumer.Consumer commits input offsets from."""
    from collections import defaultdict
    from types import SimpleNamespace

    from intervaltree import IntervalTree

    c = SimpleNamespace(_acked=defaultdict(list), _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree),
                        _committed_offset=defaultdict(lambda: None))
    c._committed_offset["tp"] = committed
    return c


def test_faust_commits_past_offsets_never_acked_which_is_why_the_worker_commits_its_inputs():
    """The three ways Faust 0.15.3 passes messages never stored, each as the chaos run's loss had
    it (the lost runs began at the committed offsets: news/1 1248..1396, social/0 45..47); the
    worker's InputOffsets, given the same deliveries, stays at the first message not done."""
    import asyncio

    from faust.transport.consumer import Consumer

    from stream.commits import InputOffsets

    # 1. a delivery jumps past the read offset: _drain_messages records a "gap", _new_offset fills
    # it, and its one-offset slack covers the committed offset itself
    c = _faust_offsets(1248)
    asyncio.run(Consumer._add_gap(c, "tp", 1249, 1397))
    c._acked["tp"] = [1397, 1398, 1399]
    assert Consumer._new_offset(c, "tp") == 1398
    # 2. the one-offset slack alone: 45 never acked
    c = _faust_offsets(45)
    c._acked["tp"] = [46, 47]
    assert Consumer._new_offset(c, "tp") == 48
    # 3. no committed offset (Faust drops it at every revocation): any acked run is committed
    c = _faust_offsets(None)
    c._acked["tp"] = [172, 173]
    assert Consumer._new_offset(c, "tp") == 174

    o = InputOffsets()
    o.sought("tp", 1248)
    assert o.delivered("tp", 1397) == 1248  # read again from 1248, not committed past it
    for off in (1397, 1398, 1399):
        o.done("tp", off)
    assert o.committable() == {}
    o.sought("tp", 45)
    for off in (45, 46, 47):
        o.delivered("tp", off)
    o.done("tp", 46)
    o.done("tp", 47)
    assert o.committable() == {}
    o.revoked(["tp"])
    o.delivered("tp", 172)
    o.done("tp", 172)
    assert o.committable() == {}


def test_a_fetch_that_was_out_while_a_seek_ran_is_read_again_from_where_the_seek_put_it():
    """The suite's broker_paused rebalance case, stalled in CI: a rebalance's seek ran while a
    fetch was out, the fetch returned records from after the seek (the fetcher's position past
    them), and the consumer dropped them as fetched before the seek. With no new traffic the
    partitions never delivered again: 900 messages unread, /health 503 'stalled' for good. The
    records are still dropped (nothing delivered across a seek), and the partition is sought
    again to where the seek put it."""
    import asyncio

    import faust
    from aiokafka.structs import ConsumerRecord
    from faust.types import TP

    from stream.kafka_compat import FetchGuard, guarded_transport

    async def go():
        app = faust.App("t-seek-race", broker="kafka://localhost:1")
        transport = guarded_transport(FetchGuard(), frozenset({"in"}))(app.conf.broker, app)

        async def nothing(*_):
            return None
        c = transport.create_consumer(callback=nothing, on_partitions_revoked=nothing, on_partitions_assigned=nothing)
        tp = TP("in", 0)
        c.assignment = lambda: {tp}
        c.highwater = lambda _: 200
        c.resume_flow()
        seeks = []

        async def seek(p, o):
            seeks.append((p, o))
        c._seek = seek
        records = [ConsumerRecord("in", 0, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in range(95, 100)]

        async def fetch_spanning_a_seek(timeout):
            c._seek_epoch += 1  # as perform_seek: the partition sought to its committed offset, 95
            c._seek_offsets = {tp: 95}
            return {tp: records}, {tp}
        c._wait_next_records = fetch_spanning_a_seek
        delivered = [m async for m in c.getmany(1.0)]
        return delivered, seeks, c._read_offset[tp]

    delivered, seeks, read_offset = asyncio.run(go())
    assert delivered == []
    assert seeks == [(TP("in", 0), 95)] and read_offset == 95
