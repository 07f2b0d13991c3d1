"""The window of work taken ahead of the lanes (issue 10, finding 7): sized by what the lanes
finish within the horizon, bounded in bytes, starting small, giving back a slow surplus."""

from __future__ import annotations

from worker.window import Window


def window(**overrides) -> Window:
    settings = dict(lanes=4, ceiling=512, horizon=100.0, max_bytes=10_000_000)
    return Window(**{**settings, **overrides})


def measured(w: Window, seconds: float, times: int = 20) -> Window:
    for _ in range(times):
        w.worked(seconds)
    return w


def test_a_new_window_holds_only_what_the_lanes_can_start():
    assert window().grant() == 4


def test_fast_work_grows_the_window_to_its_ceiling():
    w = window()
    w.granted = w.grant()
    measured(w, 0.002)
    assert w.should_resubscribe() and w.grant() == 512


def test_slow_work_keeps_the_window_to_what_the_lanes_finish_within_the_horizon():
    # Six seconds a provisioning (Toggl, a request a second): four lanes, 100 s: 66.
    w = measured(window(), 6.0)
    assert w.target() == 66
    w.granted = 512  # granted while the work was fast
    assert w.should_resubscribe()


def test_one_slow_message_after_fast_ones_already_counts():
    w = measured(window(), 0.002)
    w.worked(6.0)
    assert w.target() < 512


def test_a_window_within_a_factor_of_two_is_left_alone():
    w = measured(window(horizon=10.0), 0.4)  # 4 lanes x 10 s / 0.4 s = 100
    w.granted = 120
    assert not w.should_resubscribe()
    w.granted = 40
    assert w.should_resubscribe()


def test_after_a_shrink_nothing_is_granted_until_the_surplus_is_worked_off():
    w = measured(window(), 6.0)  # target 66
    for _ in range(100):
        w.delivered(1000)
    assert w.grant() is None
    for _ in range(34):
        w.released(1000)
    assert w.grant() == 66


def test_a_slow_surplus_beyond_twice_the_window_is_given_back_down_to_the_window():
    w = measured(window(), 6.0)  # target 66
    assert w.surplus(100) == 0  # within twice the window: not worth the churn
    assert w.surplus(500) == 434


def test_bytes_held_pause_the_window_until_half_of_them_are_done():
    w = window(max_bytes=1_000_000)
    w.granted = 4
    for _ in range(4):
        w.delivered(250_000)
    assert w.over_bytes() and w.should_resubscribe()
    w.granted = 0
    assert w.grant() is None
    w.released(250_000)
    assert w.grant() is None  # 750 kB held: still over half
    w.released(250_000)
    assert w.grant() is not None


def test_large_bodies_shrink_the_window_to_the_byte_bound():
    w = measured(window(max_bytes=2_000_000), 0.002)
    for _ in range(300):
        w.delivered(200_000)
        w.released(200_000)
    assert w.target() == 10


def test_the_first_large_body_after_small_ones_bounds_the_window_at_once():
    w = measured(window(max_bytes=1_000_000), 0.002)
    for _ in range(100):
        w.delivered(2_000)
        w.released(2_000)
    w.delivered(200_000)
    assert w.target() == 5


def test_a_lost_connection_forgets_what_was_held():
    w = window()
    w.granted = 4
    w.delivered(1000)
    w.forget_held()
    assert (w.held, w.held_bytes, w.granted) == (0, 0, 0)
