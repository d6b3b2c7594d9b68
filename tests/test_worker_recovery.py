"""/health names a Faust table recovery that does not end (every stream paused): issue 20's stall."""

from types import SimpleNamespace

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
