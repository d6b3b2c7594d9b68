"""Issue 17, "use the machine": the worker's ONNX Runtime threads follow the CPUs it may use by
default, and Faust's "producer buffer full" warning cannot flood the log."""

import logging
import os

from core.settings import Settings
from stream.app import RateLimitedLog, usable_cpus


def test_threads_default_to_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.delenv("FINSENT_ORT_THREADS", raising=False)
    assert Settings(_env_file=None).ort_threads == 0  # 0 = usable_cpus(); was 1: a third of 2 cores idle
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("FINSENT_ORT_THREADS", "3")
    assert Settings(_env_file=None).ort_threads == 3  # overridable


def test_producer_buffer_full_is_logged_once_per_interval(caplog):
    logger = logging.getLogger("finsent.test.producer")
    f = RateLimitedLog("producer buffer full", every_s=3600)
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.WARNING, logger="finsent.test.producer"):
            for i in range(500):
                logger.warning(f"producer buffer full size {101 + i}")
            logger.warning("something else")
        texts = [r.getMessage() for r in caplog.records]
        assert texts == ["producer buffer full size 101", "something else"] and f.held == 499
    finally:
        logger.removeFilter(f)
