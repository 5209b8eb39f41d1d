"""The OpenAI emulator's settings and the live state its request handlers share.

Settings (:class:`OpenAIEmulatorConfig`) say how the emulated service behaves: its limits, its
latency, its faults, how small it draws. :class:`EmulatorState` holds what changes while it runs:
the two rate windows, the fault plan and quota, the scripted refusals and the usage form of chat
answers, the generated files served by URL, and the request log tests read.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from imggen.emulators.fault_plan import FaultPlan, FaultRates
from imggen.emulators.openai_batch_store import BatchEmulatorConfig
from imggen.emulators.openai_header_forms import check_forms
from imggen.emulators.rate_window import WINDOWS, SlidingWindow

USAGE_FORMS = ("full", "counts", "none")  # a chat answer's usage as sent: with its details, the counts only, or none


@dataclass(frozen=True)
class OpenAIEmulatorConfig:
    """How the emulated OpenAI service behaves.

    ``render_scale`` / ``render_max_side``: the emulator draws the picture at the requested size
    times ``render_scale``, shrunk so its longer side is at most ``render_max_side`` pixels. The
    response still reports the requested size; only the pixels are fewer, which keeps tests fast.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    images_per_minute: int = 60  # counted in images (n per request), as the API's IPM limit
    tokens_per_minute: int | None = None  # a GPT image model's TPM limit, counted in each answer's usage tokens
    window_kind: str = "sliding"  # how the images and tokens limits are counted (see rate_window.WINDOWS)
    chat_requests_per_minute: int = 500
    chat_tokens_per_minute: int | None = None  # counted in each chat answer's usage tokens
    window_s: float = 60.0  # the rate window; tests shorten it
    latency_s: float = 0.0  # added before each successful generation or chat answer
    jitter_s: float = 0.0  # latency varies uniformly by +- this much
    api_key: str | None = None  # when set, any other key gets 401 invalid_api_key
    render_scale: float = 1.0
    render_max_side: int | None = None
    error_rate: float = 0.0  # share of requests answered 500 or 503
    drop_rate: float = 0.0  # share of requests whose connection is closed without a response
    slow_rate: float = 0.0  # share of requests delayed by slow_s
    slow_s: float = 30.0
    blocked_word: str = "BLOCKED_PROMPT"  # a prompt containing it is refused by the safety system
    quota_images: int | None = None  # images the account may generate before insufficient_quota
    url_ttl_s: float = 3600.0  # URL responses expire like the API's (60 minutes)
    allow_retired: bool = True  # serve retired models' legacy contract (e.g. dall-e-3 URLs)
    today: dt.date | None = None  # the date model retirement is judged on (default: today)
    tile_threshold: float = 10.0  # the vision judge's "same tile" distance (0-255)
    seed: int = 0  # random faults and jitter replay with the same seed
    batch: BatchEmulatorConfig = field(default_factory=BatchEmulatorConfig)  # the Batch API's timing and faults
    rate_header_form: str = "all"  # x-ratelimit-* as sent: all, no_remaining, none or malformed
    retry_after_form: str = "seconds_and_ms"  # a 429's wait: seconds_and_ms, seconds, date, none or malformed
    chat_usage_form: str = "full"  # a chat answer's usage block as sent: full, counts or none


@dataclass
class RequestRecord:
    """One request as the emulator saw it; ``status`` None: no response was sent (the connection
    was dropped, or the client gave up first)."""

    method: str
    path: str
    time: float  # wall-clock arrival, seconds since the epoch
    model: str | None = None
    prompt: str | None = None
    images: int = 0  # images generated (0 unless a generation succeeded)
    admitted: float | None = None  # wall-clock time the rate window let it through, if it did
    status: int | None = None
    usage: dict | None = None  # an answer's full usage as billed (chat: also when the form sent less or none)
    refused: bool = False  # the chat answer was a scripted refusal


@dataclass
class StoredFile:
    data: bytes
    content_type: str
    created: float = field(default_factory=time.monotonic)


class EmulatorState:
    """What the handlers share while the server runs."""

    def __init__(self, config: OpenAIEmulatorConfig) -> None:
        check_forms(config.rate_header_form, config.retry_after_form)
        self.config = config
        self.chat_usage_form = checked_usage_form(config.chat_usage_form)
        self._refusals = 0  # chat answers still to be refusals
        self._refusals_lock = threading.Lock()
        if config.window_kind not in WINDOWS:
            raise ValueError(f"unknown window kind {config.window_kind!r}; choose from {', '.join(sorted(WINDOWS))}")
        counted = WINDOWS[config.window_kind]
        self.image_window = counted(config.images_per_minute, config.window_s)
        self.token_window = counted(config.tokens_per_minute, config.window_s) if config.tokens_per_minute else None
        self.chat_window = SlidingWindow(config.chat_requests_per_minute, config.window_s)
        self.chat_token_window = (SlidingWindow(config.chat_tokens_per_minute, config.window_s)
                                  if config.chat_tokens_per_minute else None)
        self.faults = FaultPlan(
            FaultRates(server_error=config.error_rate, drop=config.drop_rate, slow=config.slow_rate),
            quota_images=config.quota_images, seed=config.seed,
        )
        self.requests: list[RequestRecord] = []
        self._files: dict[str, StoredFile] = {}
        self._files_lock = threading.Lock()
        self._jitter = random.Random(config.seed)

    def refuse_next(self, times: int) -> None:
        with self._refusals_lock:
            self._refusals += times

    def take_refusal(self) -> bool:
        """Whether this chat answer is a scripted refusal (counted off)."""
        with self._refusals_lock:
            if not self._refusals:
                return False
            self._refusals -= 1
            return True

    def latency(self) -> float:
        jitter = self._jitter.uniform(-self.config.jitter_s, self.config.jitter_s) if self.config.jitter_s else 0.0
        return max(self.config.latency_s + jitter, 0.0)

    def store_file(self, name: str, data: bytes, content_type: str) -> None:
        with self._files_lock:
            expired = [k for k, f in self._files.items() if time.monotonic() - f.created > self.config.url_ttl_s]
            for key in expired:
                del self._files[key]
            self._files[name] = StoredFile(data, content_type)

    def get_file(self, name: str) -> StoredFile | None:
        with self._files_lock:
            stored = self._files.get(name)
        if stored is None or time.monotonic() - stored.created > self.config.url_ttl_s:
            return None
        return stored


def checked_usage_form(form: str) -> str:
    if form not in USAGE_FORMS:
        raise ValueError(f"unknown chat usage form {form!r}; choose from {', '.join(USAGE_FORMS)}")
    return form


STATE = web.AppKey("openai_emulator_state", EmulatorState)
RECORD = web.RequestKey("openai_emulator_record", RequestRecord)  # filled in by the handlers
