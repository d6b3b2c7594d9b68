"""Event-time watermark (stream.watermark) and its stall report (stream.detection): idle and
drained partitions do not hold it, after a restart or a rebalance too (issue 17 item 1); with
every partition idle one item dated ahead of the clock does not make real events late (item 2);
a watermark that cannot advance says so (/health, metric)."""

from stream.detection import Detection
from stream.detector import Cell, DetectorConfig, KeyState, SpikeDetector
from stream.records import Counts
from stream.watermark import PartitionClock, WatermarkView

L = 30.0
NOW = 1_800_000_000.0  # wall clock of the detecting side in these tests


def test_after_a_restart_a_partition_processed_to_its_end_before_is_idle_once_silent():
    """The process before committed news/0 up to its end; this one has stored nothing from it
    (next_offset empty). It must not hold the watermark: idle after idle_s, not unknown forever."""
    c = PartitionClock(lateness_s=L, idle_s=5.0)
    owned, committed = {"news/0": 120, "news/1": 80}, {"news/0": 120, "news/1": 40}
    assert c.marks(owned, committed, now=100.0) == {"news/0": [None, False], "news/1": [None, False]}
    assert c.marks(owned, committed, now=104.0)["news/0"] == [None, False]  # silent 4 s of 5
    marks = c.marks(owned, committed, now=105.5)
    assert marks["news/0"] == [None, True]  # processed to its end and silent: idle
    assert marks["news/1"] == [None, False]  # 40 messages behind its committed offset: holds


def test_after_a_restart_live_traffic_on_one_partition_gives_a_watermark():
    c = PartitionClock(lateness_s=L, idle_s=5.0)
    owned = {"news/0": 120, "news/1": 0, "social/0": 7}
    committed = {"news/0": 120, "news/1": None, "social/0": None}
    c.marks(owned, committed, now=100.0)  # assigned
    c.observe("social/0", NOW, offset=6, now=106.0)  # live traffic on one partition only
    view = WatermarkView(frozenset(owned), pause_s=900, lateness_s=L)
    assert view.update(c.marks(owned, committed, now=106.5), now=NOW + 1) == NOW - L
    assert view.holder() == "social/0 (not idle, its mark at 2027-01-15 07:59:30Z)"


def test_a_partition_given_back_after_a_rebalance_starts_anew_and_its_old_mark_does_not_freeze_the_view():
    """Worker A reported news/1 at t=500 (active) and lost it; worker B owns it now and has
    nothing new from it: B's marks say idle after idle_s, and the view moves on with news/0."""
    a = PartitionClock(lateness_s=L, idle_s=5.0)
    a.observe("news/1", 500.0 + L, offset=9, now=10.0)
    view = WatermarkView(frozenset({"news/0", "news/1"}), pause_s=900, lateness_s=L)
    view.update(a.marks({"news/1": 10}, now=11.0) | {"news/0": [600.0, False]}, now=NOW)
    assert view.value == 500.0
    b = PartitionClock(lateness_s=L, idle_s=5.0)
    assert b.marks({"news/1": 10}, {"news/1": 10}, now=50.0) == {"news/1": [None, False]}
    view.update(b.marks({"news/1": 10}, {"news/1": 10}, now=56.0), now=NOW)
    assert view.update({"news/0": [700.0, False]}, now=NOW) == 700.0  # no longer frozen at 500
    # and A, given news/1 back later, counts its silence from then, not from its old items
    a.marks({}, now=60.0)
    assert a.marks({"news/1": 10}, {"news/1": 10}, now=61.0)["news/1"][1] is False
    assert a.marks({"news/1": 10}, {"news/1": 10}, now=66.5)["news/1"][1] is True


def test_dead_letters_are_no_activity_in_event_time():
    c = PartitionClock(lateness_s=L, idle_s=5.0)
    c.marks({"t/0": 3}, now=0.0)
    c.observe("t/0", 1000.0, offset=0, now=1.0)
    c.observe("t/0", None, offset=1, now=5.0)  # not JSON: dead-lettered
    c.observe("t/0", None, offset=2, now=5.9)
    assert c.marks({"t/0": 3}, now=6.5) == {"t/0": [1000.0 - L, True]}


def test_with_every_partition_idle_an_item_dated_ahead_does_not_make_the_next_real_events_late():
    """One item dated 250 s ahead (inside the 300 s future-skew allowance) on news/0; every
    partition idle. The watermark stays at wall clock − lateness, not 250 s ahead of it, and the
    real events of the next minutes are not late."""
    view = WatermarkView(frozenset({"news/0", "news/1"}), pause_s=900, lateness_s=L)
    view.update({"news/0": [NOW + 250 - L, True], "news/1": [NOW - 5 - L, True]}, now=NOW)
    assert view.value == NOW - L
    det, st = SpikeDetector(DetectorConfig()), KeyState()
    for i, t in enumerate((NOW + 2, NOW + 30, NOW + 90)):  # real events, each as it arrives
        view.update({"news/1": [t - L, True]}, now=t + 1)
        _, late = det.add(st, "ticker:ACME", [Cell(int(t // 10), 1, 1)], batch=i, watermark=view.value)
        assert late == 0
    assert view.value == NOW + 91 - L  # it follows the clock while the item ahead is idle


def test_an_active_partition_with_an_item_dated_ahead_does_not_push_the_watermark_past_the_clock():
    view = WatermarkView(frozenset({"news/0", "news/1"}), pause_s=900, lateness_s=L)
    view.update({"news/0": [NOW + 250 - L, False], "news/1": [NOW - 100, True]}, now=NOW)
    assert view.value == NOW - L


def test_a_backlog_is_not_capped_and_offline_has_no_clock():
    view = WatermarkView(frozenset({"a", "b"}), pause_s=900, lateness_s=L)
    assert view.update({"a": [1000.0, True], "b": [900.0, True]}, now=NOW) == 1000.0  # far behind the clock
    assert WatermarkView(frozenset({"a"}), 900, L).update({"a": [NOW + 500, False]}) == NOW + 500


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def detection(clock: Clock, expected=("news/0", "news/1"), stall_s=120.0) -> Detection:
    # check() reads only the views: no sink or producer is used
    return Detection(SpikeDetector(DetectorConfig()), {}, None, None, frozenset(expected), 900, stall_s, clock)


async def test_a_watermark_held_back_longer_than_the_bound_is_a_problem_and_a_metric():
    from stream import metrics

    clock = Clock(NOW)
    d = detection(clock)
    d.reassigned({0, 1})
    await d.on_marks(0, {"news/0": [NOW - 40, False], "news/1": [None, False]})  # news/1: no event time
    await d.on_marks(1, {"news/0": [NOW - 40, True], "news/1": [NOW - 35, True]})  # every partition idle
    assert d.problem() == ""
    clock.t += 121
    await d.on_marks(0, {"news/0": [NOW + 80, False]})
    await d.on_marks(1, {})  # all idle, at rest: nothing waits for an event time
    assert d.problem() == ("scored partition 0: watermark none yet held for 121 s by news/1 "
                           "(not idle, no event time yet)")
    assert metrics.WATERMARK_STALLED._value.get() == 1
    await d.on_marks(0, {"news/1": [None, True]})  # idle now: no longer holds it
    assert d.problem() == "" and d.watermarks()["0"] == NOW + 80
    assert metrics.WATERMARK_STALLED._value.get() == 0


async def test_no_marks_at_all_on_an_owned_partition_is_a_problem():
    clock = Clock(NOW)
    d = detection(clock, stall_s=60)
    d.reassigned({2})
    clock.t += 30
    assert d.check() == {}
    clock.t += 31
    assert d.check() == {2: "no watermark marks for 61 s"}


async def test_a_partition_given_back_starts_its_stall_clock_again():
    clock = Clock(NOW)
    d = detection(clock)
    d.reassigned({0})
    await d.on_marks(0, {"news/0": [NOW - 40, False], "news/1": [NOW - 50, False]})
    clock.t += 500  # away (another worker read it), then given back: not a stall of 500 s
    d.reassigned({0})
    assert d.check() == {}
    await d.on_marks(0, {"news/1": [NOW - 45, False]})
    assert d.watermarks() == {"0": NOW - 45}


async def test_a_share_of_events_counted_late_is_a_problem_not_only_a_count():
    """The outside check counted 23 % of its events late with /health 200. Late events are in no
    window (a missed surge): more than 1 % in ten minutes is a problem."""
    clock = Clock(NOW)
    d = detection(clock)
    await d.on_marks(0, {"news/0": [NOW - 40, False], "news/1": [NOW - 40, False]})

    def counts(batch: int, t: float, n: int) -> Counts:
        return Counts("topic:Earnings", [[int(t // 10), n, 0, [], {}]], batch)

    await d.on_counts(0, counts(1, NOW - 35, 500))  # on time
    assert d.problem() == ""
    await d.on_counts(0, counts(2, NOW - 400, 9))  # behind the watermark: late, a few
    assert d.late == {"topic": 9} and d.problem() == ""
    await d.on_counts(0, counts(3, NOW - 400, 91))
    assert d.problem() == "100 of 600 events in the last 10 min counted late (16.7 %): behind the event-time " \
                          "watermark, in no window"
    clock.t += 600  # ten minutes later, nothing late since
    await d.on_marks(0, {"news/0": [NOW + 560, False], "news/1": [NOW + 560, False]})
    assert d.problem() == ""
