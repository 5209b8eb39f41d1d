"""The engine's Supply: batches started only as the waiting claims need them, and what follows how a
batch ended (made, refused for good, failed, fatal, over budget, not sent because the run stopped)."""

from __future__ import annotations

import asyncio

import pytest

from imggen.engine.errors import BudgetReached, ErrorKind, TaskError, Withdrawn
from imggen.engine.lanes import Lane
from imggen.engine.supply import Supply


class NoCreates:
    """A lane's clock for work that creates no paid prediction."""

    create_rate_per_s = None

    def sent_at(self, key: str) -> None:
        return None


class Batches:
    """``produce`` for a supply: batch n fails at once as ``script[n]`` says (an error, or a list of
    them for its tries), else waits for ``release`` (so a test sees what is in flight) and yields
    ``size`` items ``(n, i)``."""

    def __init__(self, size: int = 3, script: dict | None = None) -> None:
        self.size, self.script = size, script or {}
        self.started: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, number: int) -> list:
        self.started.append(number)
        outcome = self.script.get(number)
        if isinstance(outcome, list):
            outcome = outcome.pop(0) if outcome else None
        if isinstance(outcome, BaseException):
            raise outcome
        await self.release.wait()
        return [(number, i) for i in range(self.size)]


def supply(batches: Batches, *, in_flight: int = 4, max_batches: int = 10, **options) -> Supply:
    return Supply(batches, lane=Lane("batches", in_flight, NoCreates(), paced=False), batch_size=batches.size,
                  max_batches=max_batches, exhausted=lambda attempts: f"nothing left after {attempts}", **options)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_only_as_many_batches_start_as_the_waiting_claims_need():
    batches = Batches(size=3)
    served = []
    items = supply(batches, on_serve=served.extend)
    claims = [asyncio.ensure_future(items.claim(slot)) for slot in range(4)]
    await settle()
    assert batches.started == [1, 2]  # 4 claims: one batch of 3 is not enough, two are
    batches.release.set()
    assert sorted(await asyncio.gather(*claims)) == [(1, 0), (1, 1), (1, 2), (2, 0)]
    assert [slot for slot, _ in served] == [0, 1, 2, 3]
    assert await items.claim(9) == (2, 1)  # the rest of batch 2 serves the next claim: no new batch
    assert batches.started == [1, 2]


async def test_items_from_earlier_runs_serve_first_and_used_numbers_are_not_made_again():
    batches = Batches(size=2)
    items = supply(batches, used={1, 3})
    items.add([(1, 0)])
    assert await items.claim("a") == (1, 0)
    batches.release.set()
    assert await items.claim("b") == (2, 0)
    assert await items.claim("c") == (2, 1)
    assert await items.claim("d") == (4, 0)
    assert batches.started == [2, 4]


async def test_the_lane_target_caps_the_batches_in_flight():
    batches = Batches(size=1)
    items = supply(batches, in_flight=2)
    claims = [asyncio.ensure_future(items.claim(slot)) for slot in range(5)]
    await settle()
    assert batches.started == [1, 2]
    batches.release.set()
    await asyncio.gather(*claims)
    assert batches.started == [1, 2, 3, 4, 5]


async def test_a_batch_refused_for_good_is_replaced_by_the_next_number():
    batches = Batches(size=2, script={1: TaskError(ErrorKind.PERMANENT, "refused")})
    items = supply(batches)
    batches.release.set()
    assert await items.claim("a") == (2, 0)
    assert batches.started == [1, 2]


async def test_a_failed_batch_fails_one_waiting_claim_and_its_number_is_tried_again():
    batches = Batches(size=1, script={1: [TaskError(ErrorKind.TRANSIENT, "timed out")]})
    items = supply(batches, in_flight=1)
    first, second = asyncio.ensure_future(items.claim("a")), asyncio.ensure_future(items.claim("b"))
    batches.release.set()
    with pytest.raises(TaskError, match="timed out"):
        await first
    assert await second == (1, 0)
    assert batches.started == [1, 1]


async def test_a_fatal_batch_fails_every_waiting_claim_and_later_ones():
    batches = Batches(size=1, script={1: TaskError(ErrorKind.FATAL, "bad key")})
    items = supply(batches, in_flight=1)
    claims = [asyncio.ensure_future(items.claim(slot)) for slot in range(3)]
    batches.release.set()
    for claim in claims:
        with pytest.raises(TaskError, match="bad key"):
            await claim
    with pytest.raises(TaskError, match="bad key"):
        await items.claim("late")
    assert batches.started == [1]


async def test_after_max_batches_the_claims_fail_with_the_pipelines_reason():
    batches = Batches(size=1, script={n: TaskError(ErrorKind.PERMANENT, "refused") for n in range(1, 9)})
    items = supply(batches, in_flight=1, max_batches=3)
    batches.release.set()
    with pytest.raises(TaskError, match="nothing left after 3") as failure:
        await items.claim("a")
    assert failure.value.kind is ErrorKind.FATAL and batches.started == [1, 2, 3]


async def test_over_budget_no_batch_starts_until_those_in_flight_end_then_one_more_try():
    batches = Batches(size=1, script={2: BudgetReached("over budget")})
    items = supply(batches, in_flight=2)
    first, second = asyncio.ensure_future(items.claim("a")), asyncio.ensure_future(items.claim("b"))
    await settle()
    assert batches.started == [1, 2]  # 2 was refused while 1 was in flight: nothing starts meanwhile
    batches.release.set()
    assert await first == (1, 0)  # batch 1 serves a claim
    with pytest.raises(BudgetReached):
        await second  # then the one more try (the same number, nothing was sent) is over budget too
    assert batches.started == [1, 2, 2]


async def test_a_stop_withdraws_the_waiting_claims_and_starts_nothing_more():
    from imggen.engine.events import Progress, StateChanged

    batches = Batches(size=1)
    items = supply(batches, in_flight=1)
    claims = [asyncio.ensure_future(items.claim(slot)) for slot in range(2)]
    await settle()
    items(StateChanged(Progress(total=2, state="stopping")))
    for claim in claims:
        with pytest.raises(Withdrawn):
            await claim
    batches.release.set()
    await items.close(cancel=False)
    assert batches.started == [1]  # the batch in flight went on; no other started


async def test_a_pause_withdraws_the_waiting_claims_and_they_claim_again_after():
    batches = Batches(size=1)
    items = supply(batches, in_flight=1)
    waiting = asyncio.ensure_future(items.claim("a"))
    await settle()
    items.withdraw_waiters()
    with pytest.raises(Withdrawn):
        await waiting
    batches.release.set()
    assert await items.claim("a") == (1, 0)  # the batch made meanwhile serves it
    assert batches.started == [1]
