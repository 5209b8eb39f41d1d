"""A run's budget: one account of what the run has spent and committed, whether its tasks can say
ahead what they cost or only their paid calls can.

Tasks with an estimate (a style image: its price is known before it is asked for): the runner holds
each task's estimate before it starts (:meth:`Budget.hold`); it starts only if the estimate fits
beside what this run has spent and what the tasks in flight hold, and while tasks in flight hold
estimates it waits for them to be billed (often below their estimates) before it decides the budget
is spent. Tasks without one (a training image: the grid it takes a tile from may be shared by nine
images or by none, a rejected tile draws another grid) estimate nothing, and each of their paid
calls is reserved instead (:meth:`Budget.reserve`): sent only if what this run has committed (calls
sent whose bill is not settled yet included) plus its price fits. Either way
:class:`~.errors.BudgetReached` ends the run as a budget stop with the task still pending. A
reserved call that turns out unbilled (its create never answered, its prediction failed unbilled)
gives its price back; a call whose price is known only from its answer (a vision model's tokens) is
counted when it arrives; a call with no known price counts nothing: a budget with such a model runs
only with ``--allow-unpriced``, and the summary names those calls.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from .errors import BudgetReached

RERUN = "a budget counts this run only: rerun to continue (with the same or a larger --budget)"


class Budget:
    """The budget (US dollars) of one run; ``None`` caps nothing."""

    def __init__(self, limit: float | None, *, estimate_basis: str = "its estimate") -> None:
        """``estimate_basis``: what the tasks' estimates rest on, for the budget stop's message."""
        self.limit = limit
        self.committed = 0.0  # the paid calls this run reserved or was billed for
        self.held = 0.0  # the estimates of the tasks in flight
        self._estimate_basis = estimate_basis
        self._freed: asyncio.Event | None = None

    # -- tasks with an estimate (the runner) ---------------------------------------------------------
    async def hold(self, estimate: float, spent: Callable[[], float], still_running: Callable[[], bool]) -> bool:
        """Hold ``estimate`` for a task about to start; ``spent`` is what this run's finished tasks
        were billed. False when the run ended while this waited; BudgetReached when it cannot fit."""
        self._freed = self._freed or asyncio.Event()
        while self.limit is not None and self._used(spent()) + self.held + estimate > self.limit + 1e-9:
            if self.held <= 1e-9:
                raise BudgetReached(
                    f"budget reached: spent ${self._used(spent()):.2f} of ${self.limit:.2f} in this run, and the "
                    f"next task may cost up to ${estimate:.2f} ({self._estimate_basis}); {RERUN}")
            self._freed.clear()
            await self._freed.wait()
            if not still_running():
                return False
        self.held += estimate
        return True

    def release(self, estimate: float) -> None:
        """A task that held ``estimate`` has ended (what it was billed is in ``spent`` now)."""
        self.held -= estimate
        if self._freed is not None:
            self._freed.set()

    # -- paid calls of tasks without one -----------------------------------------------------------
    def reserve(self, what: str, price: float | None) -> None:
        """Count ``price`` as committed before the call ``what`` is sent, or raise BudgetReached."""
        if price is None:
            return
        if self.limit is not None and self.committed + self.held + price > self.limit + 1e-9:
            raise BudgetReached(
                f"budget reached: spent ${self.committed:.2f} of ${self.limit:.2f} in this run (calls in flight "
                f"included), and the next {what} costs ${price:.2f}; {RERUN}")
        self.committed += price

    def refund(self, price: float | None) -> None:
        """A reserved call that was not billed."""
        self.committed -= price or 0.0

    def add(self, cost: float | None) -> None:
        """A call billed at a price known only from its answer."""
        self.committed += cost or 0.0

    def _used(self, spent: float) -> float:
        """What this run has used of the budget: its tasks' bills, or its calls' where those are
        reserved one by one (they include what the tasks in flight have sent)."""
        return max(spent, self.committed)
