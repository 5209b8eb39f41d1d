"""What the Replicate emulator is told to do and what it remembers: configuration, predictions, logs, counters.

Behaviour is set per model (latency, a random failure rate, a queue of scripted outcomes such as
"abort the next prediction"); tests read the request log and the counters afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from imggen.backends.replicate_catalog import FLUX_KONTEXT_PRO, TOPAZ_IMAGE_UPSCALE, replicate_models
from imggen.emulators.replicate_faults import ReplicateFaults

# What a scripted prediction ends as. "safety" fails with the provider's content-filter error;
# "stall" stays "processing" until it is canceled; "expired" succeeds (and is billed) but its
# output file is already gone (404), as after Replicate's hour of retention.
OUTCOMES = frozenset({"succeeded", "failed", "safety", "canceled", "aborted", "stall", "expired"})
SAFETY_ERROR = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
FAILURE_ERROR = "Prediction failed: the model worker crashed (emulated)."


@dataclass
class ModelBehaviour:
    """How one emulated model behaves."""

    latency_s: float = 0.5  # from creation to the terminal state
    starting_s: float = 0.05  # the first part of the latency, spent in "starting"
    failure_rate: float = 0.0  # share of unscripted predictions that fail
    outcomes: deque[str] = field(default_factory=deque)  # scripted outcomes, used before the failure rate


@dataclass
class ReplicateEmulatorConfig:
    """Settings of one emulator instance."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    api_token: str | None = None  # when set, /v1 requests must send "Authorization: Bearer <token>"
    grid_latency_s: float = 0.5
    upscale_latency_s: float = 0.3
    latency_jitter: float = 0.0  # each prediction's latency varies uniformly by +- this share of its model's
    create_limit_per_min: int | None = 600  # the documented create-prediction limit; None: unlimited
    create_window_s: float = 60.0  # the window that limit counts over (shorter: a low-credit account's "1 per second")
    file_ttl_s: float = 3600.0  # output files answer 404 after this
    data_retention_s: float = 3600.0  # then predictions show output null and data_removed true
    max_wait_s: float = 60.0  # the longest "Prefer: wait" hold
    grid_megapixels: float = 1.0  # size of a generated grid
    near_duplicates: int = 0  # tiles per grid that nearly copy an earlier tile
    repeated_tiles: int = 0  # first tiles of every later grid that nearly copy the first grid's
    insufficient_credit: bool = False  # answer every create with 402
    random_seed: int = 0  # for the failure rate
    behaviours: dict[str, ModelBehaviour] = field(default_factory=dict)
    faults: ReplicateFaults = field(default_factory=ReplicateFaults)  # poll faults, random throttles, slow bodies
    tls: bool = False  # serve HTTPS (a certificate made for this machine), as the real service is served

    def __post_init__(self) -> None:
        self.behaviours.setdefault(FLUX_KONTEXT_PRO, ModelBehaviour(latency_s=self.grid_latency_s))
        self.behaviours.setdefault(TOPAZ_IMAGE_UPSCALE, ModelBehaviour(latency_s=self.upscale_latency_s))


@dataclass
class RequestRecord:
    """One request the emulator answered. The bearer token itself is not kept."""

    method: str
    path: str
    status: int
    prefer: str | None
    authorized: bool  # sent the configured token (or any bearer token when none is configured)
    body: Any = None


@dataclass
class EmulatorCounts:
    """Counters tests read."""

    created: Counter[str] = field(default_factory=Counter)  # predictions created, by model
    paid: Counter[str] = field(default_factory=Counter)  # succeeded predictions (the ones billed), by model
    finished: Counter[str] = field(default_factory=Counter)  # terminal statuses
    throttled: int = 0  # creates answered 429
    polls: int = 0  # GET /v1/predictions/{id}
    downloads: int = 0  # output files served
    expired_downloads: int = 0  # output file requests after expiry

    def billed_usd(self) -> float:
        """What the succeeded predictions cost at the catalog's prices (none where no price is known)."""
        models = replicate_models()
        return sum(n * (models[ref].price_usd_per_prediction or 0.0) for ref, n in self.paid.items())


@dataclass
class StoredFile:
    """An output file served under /files/."""

    data: bytes
    content_type: str
    created_at: float


@dataclass
class EmulatedPrediction:
    """One prediction's state; ``done`` is set when it reaches a terminal status."""

    id: str
    model: str
    input: dict[str, Any]
    created_at: float
    status: str = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    output: str | None = None
    error: str | None = None
    logs: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    def finish(self, status: str, now: float, *, output: str | None = None, error: str | None = None) -> None:
        self.status, self.completed_at, self.output, self.error = status, now, output, error
        self.done.set()

    def to_json(self, base_url: str, now: float, data_retention_s: float) -> dict[str, Any]:
        """The prediction object of the HTTP API (``schemas_prediction_response``)."""
        removed = self.completed_at is not None and now - self.completed_at > data_retention_s
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": "hidden",
            "input": {} if removed else self.input,
            "logs": "" if removed else self.logs,
            "output": None if removed else self.output,
            "data_removed": removed,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": iso_time(self.created_at),
            "urls": {
                "web": f"https://replicate.com/p/{self.id}",
                "get": f"{base_url}/v1/predictions/{self.id}",
                "cancel": f"{base_url}/v1/predictions/{self.id}/cancel",
            },
        }
        if self.started_at is not None:
            body["started_at"] = iso_time(self.started_at)
        if self.completed_at is not None:
            body["completed_at"] = iso_time(self.completed_at)
            body["metrics"] = {
                "predict_time": round(self.completed_at - (self.started_at or self.completed_at), 4),
                "total_time": round(self.completed_at - self.created_at, 4),
            }
        return body


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")
