"""The ways the emulators may count a per-minute limit (``rate_window.WINDOWS``), on a clock the test moves:
what each admits, when it refuses and for how long, and what its reset header says."""

from __future__ import annotations

import pytest

from imggen.emulators.rate_window import WINDOWS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def window(kind: str, limit: int = 4, window_s: float = 10.0):
    clock = Clock()
    return WINDOWS[kind](limit, window_s, clock), clock


@pytest.mark.parametrize("kind", sorted(WINDOWS))
def test_every_kind_admits_its_limit_then_refuses_and_says_when_to_return(kind):
    counted, clock = window(kind)
    assert all(counted.try_admit()[0] for _ in range(4))
    admitted, wait_s, state = counted.try_admit()
    assert not admitted and 0 < wait_s <= 10.0 and state.remaining == 0
    clock.now += wait_s
    assert counted.try_admit()[0]  # the wait it gave was enough
    assert counted.try_admit(5)[1] == float("inf")  # more than the limit never fits


def test_the_sliding_windows_differ_only_in_what_their_reset_says():
    full_again, clock = window("sliding")
    next_slot, _ = window("sliding_next")
    next_slot._clock = clock
    for seconds in (0.0, 3.0):
        clock.now += seconds
        full_again.try_admit()
        next_slot.try_admit()
    assert full_again.state().reset_s == pytest.approx(10.0)  # the newest leaves the window
    assert next_slot.state().reset_s == pytest.approx(7.0)  # the oldest does


def test_a_fixed_window_starts_over_at_each_boundary():
    counted, clock = window("fixed")
    clock.now += 9.0
    assert all(counted.try_admit()[0] for _ in range(4))
    assert counted.state().reset_s == pytest.approx(1.0)
    clock.now += 1.0  # the boundary: four more at once, where a sliding window would refuse
    assert all(counted.try_admit()[0] for _ in range(4))


def test_a_token_bucket_allows_its_burst_then_the_steady_rate():
    counted, clock = window("bucket")
    assert all(counted.try_admit()[0] for _ in range(4))
    admitted, wait_s, _ = counted.try_admit()
    assert not admitted and wait_s == pytest.approx(2.5)  # one unit refills every 10 s / 4
    clock.now += 2.5
    assert counted.try_admit()[0] and not counted.try_admit()[0]
    clock.now += 10.0
    assert counted.state().remaining == 4 and counted.state().reset_s == pytest.approx(0.0)
