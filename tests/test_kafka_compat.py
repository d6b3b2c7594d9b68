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
