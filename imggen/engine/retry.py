"""The one place that decides what a failed attempt leads to: its kind, how long to wait, whether it spends an attempt.

Backends only classify (they raise :class:`~.errors.TaskError` with an :class:`~.errors.ErrorKind`);
the runner, the training set's grid scheduling and its collection of paid predictions all ask
:func:`decide`; :func:`retried` is the one loop for a call repeated in place (an image already paid
for: downloading its file, polling its prediction again). Waiting out a provider's "retry after N
seconds" for every caller at once is :class:`~.pacing.Hold`'s.

* rate limited: wait as the server says (``Retry-After``, else the window's reset but no longer than
  the default, else the default);
  the attempt is not spent.
* transient: exponential backoff with full jitter; spends an attempt, retried while attempts last.
* permanent: recorded, never retried.
* fatal: never retried; the run stops.
* anything that is not a TaskError is a bug in the work function: permanent, never retried.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from .errors import ErrorKind, TaskError, as_task_error

Answer = TypeVar("Answer")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # attempts for transient errors
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    default_rate_limit_wait_s: float = 10.0  # a 429 that says nothing about when to come back


@dataclass(frozen=True)
class Decision:
    kind: ErrorKind
    message: str
    wait_s: float  # before the next attempt
    spends_attempt: bool
    retry: bool  # whether another attempt follows


def decide(error: BaseException, attempt: int, policy: RetryPolicy, *, paced: bool = False) -> Decision:
    """What follows the failed ``attempt`` (1-based count of attempts that spent the budget, this one included).

    ``paced``: a limiter that knows the server's limit took in its count of requests left, so a
    429 that names no wait is retried as soon as that limiter lets it (no extra hold).
    """
    error = as_task_error(error)
    kind = error.kind
    if kind is ErrorKind.RATE_LIMITED:
        return Decision(kind, error.message, rate_limit_wait(error, policy, paced=paced), False, True)
    if kind is ErrorKind.TRANSIENT:
        ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
        return Decision(kind, error.message, random.uniform(0, ceiling), True, attempt < policy.max_attempts)
    return Decision(kind, error.message, 0.0, True, False)


def rate_limit_wait(error: TaskError, policy: RetryPolicy, *, paced: bool = False) -> float:
    """Seconds a rate-limited attempt waits: the server's ``Retry-After``, nothing when a limiter paces
    the retry from the server's count (``paced``), else its window reset, else the default."""
    if error.retry_after is not None:
        return max(error.retry_after, 0.0)
    if paced and error.rate is not None and error.rate.remaining is not None:
        return 0.0
    if error.rate is not None and error.rate.reset_s:  # the window is full again by then: no need to wait longer
        return min(error.rate.reset_s, policy.default_rate_limit_wait_s)
    return policy.default_rate_limit_wait_s


async def retried(
    call: Callable[[], Awaitable[Answer]],
    policy: RetryPolicy,
    *,
    deadline_s: float | None = None,
    failure: TaskError | None = None,
    final: tuple[type[TaskError], ...] = (),
) -> Answer:
    """``await call()`` until it answers, each :class:`TaskError` retried in place as :func:`decide` says
    (while the policy's attempts last, and no wait would end past ``deadline_s`` from now); the last
    error is raised. ``failure``: a first attempt that already failed elsewhere. ``final``: errors
    raised at once (another attempt cannot help)."""
    loop = asyncio.get_running_loop()
    deadline = None if deadline_s is None else loop.time() + deadline_s
    failures = 0
    while True:
        if failure is not None:
            failures += 1
            decision = decide(failure, failures, policy)
            if not decision.retry or (deadline is not None and loop.time() + decision.wait_s > deadline):
                raise failure
            await asyncio.sleep(decision.wait_s)
        try:
            return await call()
        except final:
            raise
        except TaskError as error:
            failure = error
