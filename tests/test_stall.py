"""StallWatch: a partition whose committed offset stops while messages wait is reported."""

from stream.progress import StallWatch


def test_lag_behind_a_committed_offset_that_does_not_move_is_a_stall_after_stall_s():
    w = StallWatch(stall_s=60)
    assert w.observe({"news/0": (100, 150)}, now=0) == {}
    assert w.observe({"news/0": (100, 150)}, now=59) == {}
    assert w.observe({"news/0": (100, 160)}, now=61) == {"news/0": {"committed": 100, "lag": 60, "for_s": 61.0}}


def test_progress_restarts_the_clock_and_a_caught_up_partition_is_never_stalled():
    w = StallWatch(stall_s=60)
    w.observe({"news/0": (100, 150), "news/1": (500, 500)}, now=0)
    assert w.observe({"news/0": (101, 150), "news/1": (500, 500)}, now=100) == {}  # moved; news/1 has no lag
    assert w.observe({"news/0": (101, 150), "news/1": (500, 500)}, now=150) == {}
    assert set(w.observe({"news/0": (101, 150), "news/1": (500, 500)}, now=161)) == {"news/0"}


def test_a_partition_revoked_and_assigned_again_starts_afresh():
    w = StallWatch(stall_s=60)
    w.observe({"news/0": (100, 150)}, now=0)
    w.observe({}, now=30)  # revoked
    assert w.observe({"news/0": (100, 150)}, now=70) == {}  # seen again at 70, not stuck since 0
    assert w.observe({"news/0": (100, 150)}, now=131) != {}


def test_nothing_committed_yet_with_messages_waiting_counts_from_first_sight():
    w = StallWatch(stall_s=10)
    assert w.observe({"social/2": (None, 40)}, now=5) == {}
    assert w.observe({"social/2": (None, 40)}, now=15) == {"social/2": {"committed": None, "lag": 40, "for_s": 10.0}}
