"""The engine's one retry decision: what a failed attempt leads to, for the runner and the training set's grids alike."""

from __future__ import annotations

import asyncio
import errno
import time

import pytest

from imggen.engine.control import RunControl
from imggen.engine.errors import ErrorKind, RateHint, TaskError
from imggen.engine.pacing import Hold
from imggen.engine.polling import Durations, Expected, PollDeadline, PollSchedule, poll_until
from imggen.engine.retry import RetryPolicy, decide, retried

POLICY = RetryPolicy(max_attempts=3, backoff_base_s=1.0, backoff_max_s=3.0, default_rate_limit_wait_s=10.0)


def test_a_rate_limit_waits_as_the_server_says_and_spends_no_attempt():
    told = decide(TaskError(ErrorKind.RATE_LIMITED, "429", retry_after=7.0), 99, POLICY)
    assert (told.kind, told.wait_s, told.spends_attempt, told.retry) == (ErrorKind.RATE_LIMITED, 7.0, False, True)
    window = decide(TaskError(ErrorKind.RATE_LIMITED, "429", rate=RateHint(reset_s=4.0)), 1, POLICY)
    assert window.wait_s == 4.0
    full_reset = decide(TaskError(ErrorKind.RATE_LIMITED, "429", rate=RateHint(reset_s=360.0)), 1, POLICY)
    assert full_reset.wait_s == 10.0  # a reset is the time until the window is full again, not the next slot
    assert decide(TaskError(ErrorKind.RATE_LIMITED, "429"), 1, POLICY).wait_s == 10.0


def test_transient_errors_back_off_with_jitter_until_the_attempts_are_spent():
    waits = [decide(TaskError(ErrorKind.TRANSIENT, "503"), attempt, POLICY) for attempt in (1, 2, 3, 4)]
    assert [d.retry for d in waits] == [True, True, False, False] and all(d.spends_attempt for d in waits)
    ceilings = [1.0, 2.0, 3.0, 3.0]
    assert all(0 <= d.wait_s <= ceiling for d, ceiling in zip(waits, ceilings))


@pytest.mark.parametrize("kind", [ErrorKind.PERMANENT, ErrorKind.FATAL])
def test_permanent_and_fatal_errors_are_never_retried(kind):
    decision = decide(TaskError(kind, "no"), 1, POLICY)
    assert (decision.kind, decision.retry, decision.message) == (kind, False, "no")


def test_a_file_that_cannot_be_written_fails_its_task_and_a_full_disk_stops_the_run():
    blocked = decide(IsADirectoryError(errno.EISDIR, "Is a directory", "/out/a.png"), 1, POLICY)
    assert (blocked.kind, blocked.message, blocked.retry) == (ErrorKind.PERMANENT, "/out/a.png: Is a directory", False)
    full = decide(OSError(errno.ENOSPC, "No space left on device", "/out/b.png"), 1, POLICY)
    assert full.kind is ErrorKind.FATAL and "/out/b.png" in full.message and "make room" in full.message


def test_anything_that_is_not_a_task_error_is_a_bug_recorded_as_permanent():
    decision = decide(KeyError("grid"), 1, POLICY)
    assert (decision.kind, decision.retry, decision.message) == (ErrorKind.PERMANENT, False, "KeyError: 'grid'")


async def test_a_hold_keeps_every_caller_waiting_until_it_passes():
    hold = Hold()
    hold.extend(0.2)
    hold.extend(0.05)  # a shorter wait never shortens the hold
    began = time.monotonic()
    waited = await asyncio.gather(hold.wait(RunControl().sleep), hold.wait(RunControl().sleep))
    assert waited == [True, True] and time.monotonic() - began >= 0.19


async def test_a_stop_ends_a_hold_at_once():
    control, hold = RunControl(), Hold()
    control.bind(asyncio.get_running_loop(), on_immediate_stop=lambda: None, on_change=lambda state: None)
    hold.extend(30)
    asyncio.get_running_loop().call_later(0.05, control.stop)
    began = time.monotonic()
    assert await hold.wait(control.sleep) is False
    assert time.monotonic() - began < 5


class Flaky:
    """A call that fails with ``errors`` in turn, then answers how many times it was called."""

    def __init__(self, *errors: TaskError) -> None:
        self.errors, self.calls = list(errors), 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.001)


async def test_retried_repeats_a_call_in_place_while_the_policy_allows():
    assert await retried(Flaky(TaskError(ErrorKind.TRANSIENT, "503"), TaskError(ErrorKind.TRANSIENT, "503")), FAST) == 3
    spent = Flaky(*[TaskError(ErrorKind.TRANSIENT, f"503 #{n}") for n in range(3)])
    with pytest.raises(TaskError, match="503 #2"):  # three attempts, the last error raised
        await retried(spent, FAST)
    refused = Flaky(TaskError(ErrorKind.PERMANENT, "400"))
    with pytest.raises(TaskError, match="400"):
        await retried(refused, FAST)
    assert refused.calls == 1


async def test_retried_gives_up_on_a_final_error_and_at_its_deadline():
    class Over(TaskError):
        pass

    over = Flaky(Over(ErrorKind.TRANSIENT, "over"))
    with pytest.raises(Over):
        await retried(over, FAST, final=(Over,))
    assert over.calls == 1
    held = Flaky(TaskError(ErrorKind.RATE_LIMITED, "429", retry_after=5.0))
    started = time.monotonic()
    with pytest.raises(TaskError, match="429"):  # a wait past the deadline is not taken
        await retried(held, FAST, deadline_s=1.0)
    assert held.calls == 1 and time.monotonic() - started < 1.0
    first = Flaky()
    assert await retried(first, FAST, failure=TaskError(ErrorKind.TRANSIENT, "503")) == 1  # failed elsewhere


async def test_polls_come_at_a_share_of_the_time_run_until_the_deadline():
    schedule = PollSchedule(least_s=0.01, most_s=0.05, share=0.5, deadline_s=0.3)
    assert [schedule.delay(elapsed) for elapsed in (0.0, 0.04, 0.2)] == [0.01, 0.02, 0.05]
    loop = asyncio.get_running_loop()
    states = iter(["starting", "processing", "succeeded"])
    assert await poll_until(lambda: asyncio.sleep(0, next(states)), lambda s: s == "succeeded", "starting",
                            began=loop.time(), schedule=schedule) == "succeeded"
    began = loop.time()
    with pytest.raises(PollDeadline):
        await poll_until(lambda: asyncio.sleep(0, "processing"), lambda s: s == "succeeded", "starting",
                         began=began, schedule=schedule)
    assert 0.3 <= loop.time() - began < 0.5


def test_polls_land_when_work_of_the_kind_ended_before_and_come_close_while_it_is_due():
    durations = Durations(keep=2)
    assert durations.expected("grid") is None
    for seconds in (20.0, 30.0, 29.0):  # the latest two: ended between 29 and 30 s
        durations.add("grid", seconds)
    assert durations.expected("grid") == Expected(29.0, 30.0) and durations.expected("upscale") is None
    schedule = PollSchedule(least_s=0.25, most_s=1.0, share=0.1, deadline_s=600.0, due_share=0.02, due_polls=8,
                            least_due_s=0.05, due_slack=0.1)
    expected = durations.expected("grid")
    assert schedule.delay(28.5) == 1.0 and schedule.delay(28.5, expected) == 0.5  # on time for the expected end
    assert schedule.delay(29.0, expected) == pytest.approx(0.58)  # then at 2% of it, not the usual second
    assert schedule.delay(32.9, expected) == pytest.approx(0.58) and schedule.delay(33.1, expected) == 1.0  # slack
    spread = Expected(0.75, 1.25)  # widely spread run times: about 8 polls cover them, not 1/2% of it
    assert schedule.delay(0.8, spread) == pytest.approx(0.0625)
    assert schedule.delay(0.5, Expected(1.0, 1.0)) == 0.25 and schedule.delay(1.0, Expected(1.0, 1.0)) == 0.05
