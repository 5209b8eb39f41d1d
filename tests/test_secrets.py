"""Keys come from the environment or .env and never reach a log, the ledger, stats or an error message."""

from __future__ import annotations

import sqlite3

from imggen.engine.errors import ErrorKind, TaskError
from imggen.engine.job import run_job
from imggen.settings import Settings, redact

from conftest import Recorder, make_tasks

FAKE_KEY = "sk-test-0123456789abcdefSECRET"


def test_settings_read_dotenv_and_keep_keys_secret(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={FAKE_KEY}\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    settings = Settings()
    assert settings.openai_api_key.get_secret_value() == FAKE_KEY
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert FAKE_KEY not in repr(settings) and FAKE_KEY not in str(settings.model_dump())


def test_redact_removes_every_known_secret(monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_abcdefghijklmnop")
    assert redact("token r8_abcdefghijklmnop rejected") == "token *** rejected"


async def test_a_key_in_an_error_message_is_redacted_everywhere(out, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)

    def leaky(task, call):
        raise TaskError(ErrorKind.PERMANENT, f"Incorrect API key provided: {FAKE_KEY}")

    await run_job(out, make_tasks(2), Recorder(script=leaky))
    for path in out.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    errors = [row[0] for row in sqlite3.connect(out / "ledger.sqlite").execute("SELECT error FROM tasks")]
    assert errors == ["Incorrect API key provided: ***"] * 2


async def test_a_key_only_in_dotenv_reaches_the_openai_backend(tmp_path, monkeypatch):
    """The tile judge's backend is made with no key passed: it finds the one in ./.env, as the
    start-up check that let the run begin did (no OPENAI_API_KEY in the environment)."""
    from imggen.backends.openai_images import OpenAIImageBackend
    from imggen.emulators.openai_server import OpenAIEmulatorConfig, start_openai_emulator

    server = await start_openai_emulator(OpenAIEmulatorConfig(render_max_side=32))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={FAKE_KEY}\nOPENAI_BASE_URL={server.base_url}\n")
    backend = OpenAIImageBackend()
    try:
        image = await backend.generate("a kite", model="gpt-image-2", size="1024x1024", quality="low")
        assert image.data
        assert [(request.path, request.status) for request in server.requests] == [("/v1/images/generations", 200)]
    finally:
        await backend.aclose()
        await server.stop()


def test_one_redaction_for_a_given_key_and_for_every_known_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    assert redact(f"bad key {FAKE_KEY}", [FAKE_KEY, None]) == "bad key ***"
    assert redact(f"bad key {FAKE_KEY}", [None]) == f"bad key {FAKE_KEY}"
    assert redact(f"bad key {FAKE_KEY}") == "bad key ***"
