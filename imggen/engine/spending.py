"""A run's budget held against its paid calls themselves, for jobs whose tasks cannot say ahead what they cost.

The runner's budget reserves each task's estimate before the task starts (see :mod:`.runner`). A
training-set image cannot: the grid it takes a tile from may be shared by nine images or by none, a
rejected tile draws another grid, and a grid with no unique tile is billed to no image at all. So its
paid calls go through a :class:`SpendingCap`: a call with a known price is sent only if what this run
has spent and committed (calls sent whose bill is not settled yet) plus that price stays within the
budget; otherwise :class:`~.errors.BudgetReached` is raised, which the runner turns into a budget stop
with the task still pending. A call that turns out unbilled (its create never answered, its prediction
failed unbilled) gives its price back. A call whose price is known only from its answer (a vision
model's tokens) is counted when it arrives. A call with no known price counts nothing: a budget with
such a model runs only with ``--allow-unpriced``, and the summary names those calls.
"""

from __future__ import annotations

from .errors import BudgetReached


class SpendingCap:
    """The budget (US dollars) of one run over its paid calls; ``None`` caps nothing."""

    def __init__(self, budget: float | None) -> None:
        self.budget = budget
        self.committed = 0.0

    def reserve(self, what: str, price: float | None) -> None:
        """Count ``price`` as committed before the call ``what`` is sent, or raise BudgetReached."""
        if price is None:
            return
        if self.budget is not None and self.committed + price > self.budget + 1e-9:
            raise BudgetReached(
                f"budget reached: spent ${self.committed:.2f} of ${self.budget:.2f} in this run (calls in flight "
                f"included), and the next {what} costs ${price:.2f}; a budget counts this run only: rerun to "
                "continue (with the same or a larger --budget)")
        self.committed += price

    def refund(self, price: float | None) -> None:
        """A reserved call that was not billed."""
        self.committed -= price or 0.0

    def add(self, cost: float | None) -> None:
        """A call billed at a price known only from its answer."""
        self.committed += cost or 0.0
