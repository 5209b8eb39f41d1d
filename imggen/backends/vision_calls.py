"""The paid vision answers of one run folder (tile verdicts, gpt captions), each booked once in its ledger.

A vision call is billed when its answer arrives, whatever the answer says, so it is booked then, in
the run folder's ``paid_calls`` (:meth:`~imggen.engine.paid_calls.PaidCalls.answered`), under the key
of the grid or tile it was about: ``used`` when the answer is taken, ``wasted`` when it cannot be
read or says nothing (a refusal, an empty answer, no unique tile) and a fallback is taken instead.
An answer whose cost is unknown (no ``usage`` in the response, or no token prices for the model) is
booked with no price and counted as unpriced, never as $0.00. It is booked before anything is done
with it, so a kill afterwards leaves the bill in the ledger. What the answers for a key cost, wasted
ones included, goes to the task that uses them (:meth:`VisionCalls.bill`), so the budget counts them.
A rerun that finds a saved verdict or caption asks nothing, so books nothing.

Every question is sent through :meth:`VisionCalls.ask`, at its turn in the account's chat pace (one
:class:`~imggen.engine.pacing.Pacing` for the judge and the captions): within the requests and
tokens per minute the answers' headers and usage report, after any rate-limit hold, and not once the
run is stopping.
"""

from __future__ import annotations

import collections
from typing import Awaitable, Callable, TypeVar

from imggen.backends.openai_vision import VisionAnswer
from imggen.engine.budget import Budget
from imggen.engine.concurrency import InFlightTarget
from imggen.engine.control import RunControl
from imggen.engine.errors import ErrorKind, TaskError, Withdrawn
from imggen.engine.limiter import RequestLimiter
from imggen.engine.pacing import Pacing
from imggen.engine.paid_calls import USED, WASTED, PaidCalls
from imggen.engine.retry import RetryPolicy, decide

Taken = TypeVar("Taken")


class VisionCalls:
    def __init__(self, calls: PaidCalls, cap: Budget, control: RunControl | None = None, *,
                 window_s: float = 60.0) -> None:
        """``control`` is the run's; ``window_s`` what the limit headers count over (a minute)."""
        self._calls = calls
        self._cap = cap  # the run's budget counts every answer as it arrives
        self._unbilled: collections.Counter[str] = collections.Counter()
        self.pacing = Pacing(RequestLimiter(None), InFlightTarget(), control or RunControl(), window_s=window_s)

    async def ask(self, send: Callable[[], Awaitable[VisionAnswer]]) -> VisionAnswer:
        """``send()``'s answer, sent at its turn in the chat pace; a 429 holds every later question for
        the server's wait (:class:`~imggen.engine.errors.Withdrawn` once the run is stopping)."""
        if not await self.pacing.wait_turn(lambda: True):
            raise Withdrawn("the run is stopping: the question was not sent")
        try:
            answer = await send()
        except TaskError as error:
            if error.rate is not None:
                self.pacing.follow_server(error.rate)
            if error.kind is ErrorKind.RATE_LIMITED:
                self.pacing.rate_limited(decide(error, 1, RetryPolicy()).wait_s)
            raise
        if answer.rate is not None:
            self.pacing.follow_server(answer.rate)
        return answer

    def take(self, key: str, answer: VisionAnswer, read: Callable[[str], Taken]) -> Taken:
        """``read(answer.text)``, with the answer booked for ``key``: used when ``read`` gives something,
        wasted when it gives nothing or raises a :class:`TaskError` (raised on)."""
        try:
            taken = read(answer.text)
        except TaskError as error:
            self._book(key, answer, WASTED, error.message)
            raise
        note = None if taken else f"refused: {answer.refusal}" if answer.refusal else "nothing usable in the answer"
        self._book(key, answer, USED if taken else WASTED, note)
        return taken

    def bill(self, key: str) -> float:
        """US dollars of the priced answers booked for ``key`` since the last bill (0 when none)."""
        return self._unbilled.pop(key, 0.0)

    def _book(self, key: str, answer: VisionAnswer, state: str, note: str | None) -> None:
        self._calls.answered(key, answer.call_id, answer.model, answer.cost, state, note)
        self._cap.add(answer.cost)
        self._unbilled[key] += answer.cost or 0.0
