"""/health names a Faust table recovery that does not end (every stream paused): issue 20's stall;
and a replacement worker is not ok before it knows its input and has stored what waits."""

from types import SimpleNamespace

from aiokafka.structs import TopicPartition as TP
from prometheus_client import REGISTRY

from stream.worker import Worker


def worker(recovery, stall_s=120.0):
    app = SimpleNamespace(tables=SimpleNamespace(_recovery=recovery))
    return Worker(settings=SimpleNamespace(stall_s=stall_s), app=app, **{k: None for k in (
        "inputs", "deadletter", "scored", "alerts", "sink", "clock", "processor", "swap", "detection", "guard",
        "stall_watch", "upkeep")})


def stuck_metric():
    return REGISTRY.get_sample_value("finsent_table_recovery_stuck")


def test_a_recovery_longer_than_the_stall_limit_is_a_problem_and_a_metric():
    rec = SimpleNamespace(in_recovery=True, _recovery_started_at=1000.0)
    w = worker(rec)
    assert w.recovery_problem(1100.0) == "" and stuck_metric() == 0  # 100 s: within the limit
    assert "table recovery running for 150 s" in w.recovery_problem(1150.0) and stuck_metric() == 1
    rec.in_recovery = False  # it ended
    assert w.recovery_problem(1200.0) == "" and stuck_metric() == 0


def test_no_recovery_yet_is_no_problem():
    assert worker(None).recovery_problem(10_000.0) == ""
    assert worker(SimpleNamespace(in_recovery=True, _recovery_started_at=None)).recovery_problem(5.0) == ""


class Consumer:
    """What Worker.unassigned_problem reads of Faust's consumer: the assignment, each partition's
    highwater (None until a fetch answered for it) and the group's committed offsets."""

    def __init__(self, highwaters: dict, committed: dict):
        self.highwaters, self._committed_offset = highwaters, committed

    def assignment(self):
        return set(self.highwaters)

    def highwater(self, tp):
        return self.highwaters[tp]


def starting_worker(consumer):
    app = SimpleNamespace(tables=None, consumer=consumer)
    return Worker(settings=SimpleNamespace(stall_s=20.0, input_topics=("news",)), app=app, **{k: None for k in (
        "inputs", "deadletter", "scored", "alerts", "sink", "clock", "processor", "swap", "detection", "guard",
        "stall_watch", "upkeep")})


def test_a_replacement_is_not_ok_before_it_knows_whether_its_input_lags():
    a, b = TP("news", 0), TP("news", 1)
    consumer = Consumer({a: 500, b: None}, {a: 400, b: 300})  # b assigned, not fetched yet
    w = starting_worker(consumer)
    assert "not fetched yet" in w.unassigned_problem(1.0) and not w.started
    consumer.highwaters[b] = 300  # fetched: b is caught up, but a lags and nothing is stored
    assert "lag" in w.unassigned_problem(2.0) and not w.started
    w.stored_once = True
    assert w.unassigned_problem(3.0) == "" and w.started


def test_a_replacement_with_nothing_to_do_is_ok_once_its_partitions_answered():
    a = TP("news", 0)
    consumer = Consumer({a: None}, {})
    w = starting_worker(consumer)
    assert w.unassigned_problem(1.0).startswith("starting")
    consumer.highwaters[a] = 0  # an empty partition: the fetch answers with its end, 0
    assert w.unassigned_problem(2.0) == "" and w.started
