"""What a run is asked to do (:class:`RunnerConfig`: concurrency, limits, retries, budget) and how
it ended (:class:`RunSummary`); the :class:`~imggen.engine.runner.Runner` takes one and returns the other."""

from __future__ import annotations

from dataclasses import dataclass

from .concurrency import AUTO
from .events import Progress
from .limiter import RequestLimiter
from .pacing import RateLimit
from .retry import RetryPolicy


@dataclass(frozen=True)
class RunnerConfig:
    concurrency: int | str = AUTO  # tasks in flight: a number, or "auto" to follow rate x latency
    max_concurrency: int = 256  # the ceiling of "auto"
    rate_limit: RateLimit | None = None
    max_attempts: int = 3  # attempts per task per run for transient errors
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    default_rate_limit_wait_s: float = 10.0  # a 429 without a Retry-After or a count the limiter can use
    limit_window_s: float = 60.0  # the window a provider's limit header counts over (OpenAI: a minute)
    tokens_per_min: float | None = None  # the user's tokens limit (--tpm), for accounts whose headers say none
    tokens_each: float | None = None  # tokens one task will probably count, until answers say (e.g. a model's table)
    budget: float | None = None  # hard cap on money spent in this run
    estimate_basis: str = "its estimate"  # what the tasks' costs rest on, for the budget's message
    retry_failed: bool = False  # also retry tasks that failed permanently before
    view_interval_s: float = 10.0  # how often views (state files) are rewritten during a run

    def __post_init__(self) -> None:
        if self.concurrency != AUTO and not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ValueError(f"concurrency must be at least 1 or {AUTO!r}")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget is not None and self.budget < 0:
            raise ValueError("budget cannot be negative")
        if self.limit_window_s <= 0:
            raise ValueError("limit_window_s must be positive")
        for name in ("tokens_per_min", "tokens_each"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def limiter(self) -> RequestLimiter:
        """A run's limiter: the user's limit if any, over its period (else the provider's window)."""
        if self.rate_limit is not None:
            return self.rate_limit.limiter()
        return RequestLimiter(None, self.limit_window_s)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s,
                           self.default_rate_limit_wait_s)


@dataclass(frozen=True)
class RunSummary:
    """How a run ended. ``state`` is finished, stopped, budget or fatal."""

    state: str
    progress: Progress
    message: str | None = None
    failures: tuple[tuple[str, int, str], ...] = ()  # (error kind, tasks, the first one's message) of this plan
    unpriced: str = ""  # paid calls of this run whose price is unknown, in words ("" when none)

    @property
    def ok(self) -> bool:
        return self.state == "finished" and self.progress.failed == 0
