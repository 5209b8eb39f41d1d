"""Paid Replicate predictions of one run, each collected once: none is created again while it may deliver.

A prediction is billed once it is created and succeeds. Its id is committed to the run folder's
ledger (:class:`~imggen.engine.paid_calls.PaidCalls`) the moment the create call answers, so a
killed process's successor collects it instead of paying again. A fault while polling or
downloading (5xx, dropped connection, timeout, 429) is retried on the same id, with the waits
:func:`~imggen.engine.retry.decide` gives, until a deadline; only a prediction that is over
without a usable output (failed, canceled, aborted, unknown to the server, or billed with its
output expired) is settled and created anew, and the billed ones are recorded as wasted. Every
create first waits out the shared :class:`~imggen.engine.pacing.Hold` that a throttled create
(429 with its ``Retry-After``) extends, so no caller sends one early, and then its turn at the run's
create limiter (one for all models: Replicate counts an account's creates together), so creates are
spaced at that limit, never a burst. When each key's create was sent is kept for the in-flight
targets (:mod:`imggen.engine.lanes`). The run's paid vision answers are booked in the same ledger
(``answers``, see :mod:`.vision_calls`). The run's budget is held against every create (its price is
committed before it is sent, and given back if it was not billed) and every answer
(:mod:`imggen.engine.budget`).

A run opens its book and keeps it for everything it runs (:meth:`ReplicatePredictions.kept`); the
Replicate backend finds it there (:func:`this_runs_predictions`), so no pipeline hands it to a part.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from imggen.backends.replicate_catalog import replicate_create_limit_per_min, replicate_models
from imggen.backends.replicate_responses import PredictionEnded
from imggen.engine.budget import Budget
from imggen.engine.control import RunControl
from imggen.engine.errors import ErrorKind, TaskError, Withdrawn
from imggen.engine.limiter import RequestLimiter
from imggen.engine.pacing import Hold
from imggen.engine.paid_calls import UNBILLED, USED, WASTED, PaidCall, PaidCalls
from imggen.engine.retry import RetryPolicy, decide, retried

from .vision_calls import VisionCalls

Result = TypeVar("Result")
OnCreated = Callable[[str], None]

# Polls are cheap (3000/min allowed) and the prediction is already paid for: retry them quickly and
# for as long as the deadline allows rather than for a fixed number of attempts.
POLL_RETRY = RetryPolicy(max_attempts=10**9, backoff_base_s=0.02, backoff_max_s=2.0)
COLLECT_DEADLINE_S = 900.0


class ReplicatePredictions:
    """The paid predictions of the run folder ``root`` (kept in its ``ledger.sqlite``)."""

    def __init__(self, root: str | os.PathLike, *, hold: Hold | None = None, creates: RequestLimiter | None = None,
                 create_retry: RetryPolicy = RetryPolicy(), collect_deadline_s: float = COLLECT_DEADLINE_S,
                 cap: Budget | None = None, control: RunControl | None = None) -> None:
        """``creates`` paces every create (default: Replicate's documented limit per minute); ``cap``
        holds the run's budget against every create and answer; ``control`` is the run's, whose
        pause and stop every wait before a create obeys."""
        self.control = control or RunControl()
        self._calls = PaidCalls(Path(root))
        self.cap = cap or Budget(None)
        self._created: set[str] = set()  # the ids of the predictions this run created (their prices are committed)
        self.answers = VisionCalls(self._calls, self.cap, self.control)  # the judge's and the captions' paid answers
        self._hold = hold or Hold()
        self.creates = creates or RequestLimiter(replicate_create_limit_per_min())
        self._sent: dict[str, float] = {}  # key -> when its latest create was sent (monotonic clock)
        self._create_retry = create_retry
        self._collect_deadline_s = collect_deadline_s

    def close(self) -> None:
        self._calls.close()

    @contextlib.contextmanager
    def kept(self) -> Iterator[ReplicatePredictions]:
        """The block's book: every paid prediction made within it (its tasks too) is booked here."""
        token = _THIS_RUN.set(self)
        try:
            yield self
        finally:
            _THIS_RUN.reset(token)

    def pending(self, key: str) -> PaidCall | None:
        """The prediction created for ``key`` whose result is not saved yet, if any."""
        return self._calls.open_call(key)

    @property
    def create_rate_per_s(self) -> float | None:
        limit = self.creates.limit
        return limit / self.creates.period_s if limit is not None else None

    def sent_at(self, key: str) -> float | None:
        """When the latest create for ``key`` was sent, if one was since the last ask (it is forgotten now)."""
        return self._sent.pop(key, None)

    def saved(self, key: str) -> None:
        """``key``'s result is on disk: its prediction was used."""
        self._calls.settle_open(key, USED)

    async def collect_or_create(
        self,
        key: str,
        model: str,
        resume: Callable[[str, str], Awaitable[Result]],
        create: Callable[[OnCreated], Awaitable[Result]],
    ) -> Result:
        """Collect the prediction recorded for ``key``, or ``create`` one (recording its id at once) and collect it."""
        call = self._calls.open_call(key)
        if call is not None:
            try:
                return await self._collect(call, resume)
            except PredictionEnded as ended:
                self._settle(call, ended)  # over without a usable output: make a new one, unless that cannot help
                if ended.kind is not ErrorKind.TRANSIENT:
                    raise
        return await self._create(key, model, resume, create)

    async def _create(self, key: str, model: str, resume, create) -> Result:
        price = replicate_models()[model].price_usd_per_prediction  # None: unknown, recorded as such
        created: list[str] = []

        def record(prediction_id: str) -> None:  # committed before anything else happens to the prediction
            self._calls.created(key, prediction_id, model, price)
            self._created.add(prediction_id)
            created.append(prediction_id)

        self.cap.reserve(f"{model} prediction", price)  # raises BudgetReached: nothing is sent
        try:
            return await self._send(key, create, record, created, price)
        except PredictionEnded as ended:
            if created:
                self._settle(PaidCall(created[0], key, model, price), ended)
            raise
        except TaskError as error:
            if not created:  # the create never answered: nothing was paid
                if error.kind is ErrorKind.RATE_LIMITED:
                    self._hold.extend(decide(error, 1, self._create_retry).wait_s)
                raise
            failure = error
        call = PaidCall(created[0], key, model, price)
        try:
            return await self._collect(call, resume, failure)
        except PredictionEnded as ended:
            self._settle(call, ended)
            raise

    async def _send(self, key: str, create, record: OnCreated, created: list[str], price: float | None) -> Result:
        """Send ``key``'s create at its turn; if that ends before the create answered, nothing was paid,
        so its price goes back to the budget."""
        try:
            await self._turn()
            self._sent[key] = time.monotonic()
            return await create(record)
        except BaseException:
            if not created:
                self.cap.refund(price)
            raise

    async def _turn(self) -> None:
        """Wait until a create may be sent: past any hold, at its place in the limiter's spacing, and
        not while the run is paused. Every wait is the run control's: once the run stops, the create
        is not sent (:class:`~imggen.engine.errors.Withdrawn`)."""
        control = self.control
        while True:
            if not (await self._hold.wait(control.sleep) and await self.creates.acquire(control.sleep)
                    and await control.proceed()):
                raise Withdrawn("the run is stopping: the create was not sent")
            if self._hold.until <= time.monotonic():
                return

    async def _collect(self, call: PaidCall, resume, failure: TaskError | None = None) -> Result:
        """``resume`` the prediction until it delivers, retrying faults on the same id until the deadline."""
        return await retried(lambda: resume(call.model, call.call_id), POLL_RETRY, deadline_s=self._collect_deadline_s,
                             failure=failure, final=(PredictionEnded,))

    def _settle(self, call: PaidCall, ended: PredictionEnded) -> None:
        self._calls.settle(call.call_id, WASTED if ended.billed else UNBILLED, ended.message)
        if not ended.billed and call.call_id in self._created:  # this run committed its price
            self.cap.refund(call.price)


_THIS_RUN: ContextVar[ReplicatePredictions | None] = ContextVar("replicate_predictions", default=None)


def this_runs_predictions() -> ReplicatePredictions:
    """The book of the run this code runs in (see :meth:`ReplicatePredictions.kept`)."""
    book = _THIS_RUN.get()
    if book is None:
        raise RuntimeError("a paid Replicate prediction outside a run: keep a ReplicatePredictions book around it")
    return book
