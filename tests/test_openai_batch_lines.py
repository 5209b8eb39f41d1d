"""Reading the Batch API's result lines into the engine's error kinds, and batch mode's progress line."""

from __future__ import annotations

import json

import pytest
from openai.types import Batch

from imggen.backends.openai_batch import parse_result_lines
from imggen.engine.batch_book import Submission
from imggen.engine.errors import ErrorKind
from imggen.pipelines.styles.batch_progress import BatchWatch


def _line(custom_id: str, status: int | None, body: dict | None = None, error: dict | None = None) -> bytes:
    response = None if status is None else {"status_code": status, "request_id": "req_1", "body": body}
    return json.dumps({"id": "batch_req_1", "custom_id": custom_id, "response": response, "error": error}).encode()


def _error(code: str | None, message: str = "no", type: str = "invalid_request_error") -> dict:
    return {"error": {"code": code, "message": message, "type": type, "param": None}}


@pytest.mark.parametrize("status, body, kind", [
    (400, _error("moderation_blocked", type="image_generation_user_error"), ErrorKind.PERMANENT),
    (400, _error("content_policy_violation"), ErrorKind.PERMANENT),
    (400, _error("invalid_value"), ErrorKind.PERMANENT),
    (500, _error(None, type="server_error"), ErrorKind.TRANSIENT),
    (503, _error("server_is_overloaded"), ErrorKind.TRANSIENT),
    (429, _error("rate_limit_exceeded", type="requests"), ErrorKind.RATE_LIMITED),
])
def test_error_lines_get_the_kind_the_synchronous_answer_gets(status, body, kind):
    (line,) = parse_result_lines(_line("k", status, body))
    assert not line.ok and line.failure().kind is kind


def test_requests_a_batch_never_ran_are_not_failures_and_secrets_are_redacted():
    data = b"\n".join([
        _line("expired", None, error={"code": "batch_expired", "message": "window ended"}),
        _line("cancelled", None, error={"code": "batch_cancelled", "message": "cancelled"}),
        _line("odd", None, error={"code": "internal", "message": "key sk-secret-123 leaked"}),
        b"not json", _line("ok", 200, {"created": 1, "data": []}),
    ])
    expired, cancelled, odd, ok = parse_result_lines(data)
    assert expired.failure() is None and cancelled.failure() is None
    assert odd.failure("sk-secret-123").kind is ErrorKind.TRANSIENT
    assert "sk-secret-123" not in odd.failure("sk-secret-123").message
    assert ok.ok and ok.custom_id == "ok"


def _batch(total: int, completed: int, failed: int, in_progress_at: int | None, status: str = "in_progress") -> Batch:
    return Batch(id="batch_1", object="batch", endpoint="/v1/images/generations", input_file_id="file-1",
                 completion_window="24h", status=status, created_at=900, in_progress_at=in_progress_at,
                 request_counts={"total": total, "completed": completed, "failed": failed})


def _submission(name: str, lines: int, counts: dict | None, status: str | None) -> Submission:
    return Submission(name, 0.0, lines, 0.0, "file-1", "batch_1", status, counts)


def test_the_eta_comes_from_the_slowest_batchs_own_counts():
    watch = BatchWatch()
    fast = _submission("a", 100, {"total": 100, "completed": 50, "failed": 0}, "in_progress")
    slow = _submission("b", 100, {"total": 100, "completed": 15, "failed": 5}, "in_progress")
    watch.saw("a", _batch(100, 50, 0, in_progress_at=1000))  # 50 lines in 100 s: 100 s to go
    watch.saw("b", _batch(100, 15, 5, in_progress_at=1000))  # 20 lines in 100 s: 400 s to go
    assert watch.eta_s([fast, slow], now=1100) == pytest.approx(400)
    assert watch.describe([fast, slow], now=1100) == (
        "batches: 2 submitted, 2 in progress, 0 completed; lines 70/200 done; ETA 6m40s")
    watch.collected(fast)
    assert watch.describe([slow], now=1100).startswith("batches: 2 submitted, 1 in progress, 1 completed; "
                                                        "lines 120/200 done")


def test_no_eta_before_a_batch_reports_a_finished_line():
    watch = BatchWatch()
    waiting = _submission("a", 10, None, "validating")
    watch.saw("a", _batch(0, 0, 0, in_progress_at=None, status="validating"))
    assert watch.describe([waiting], now=1100).endswith("ETA unknown")
