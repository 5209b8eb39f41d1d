"""Keys and endpoints from the environment and a ``.env`` file, and the redaction that keeps keys out of text.

:func:`credential` is the one way a key is read (each backend's default when none is passed).

Secrets are held as :class:`pydantic.SecretStr`, so printing a settings object never shows them.
:func:`redact` replaces every secret value this process knows of with ``***``; the engine passes
every error message through it before logging or storing it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words


class Settings(BaseSettings):
    """Provider credentials and endpoints. Every field can be set as an environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    replicate_api_token: SecretStr | None = None
    replicate_base_url: str | None = None
    # The training-set seed's names, with the standard AWS variables as the fallback.
    aws_access_key: SecretStr | None = None
    aws_access_secret: SecretStr | None = None
    aws_region: str | None = None
    aws_user_files_bucket: str | None = None
    aws_endpoint_url: str | None = None


def load_settings() -> Settings:
    """Read settings from the environment and ``./.env``."""
    return Settings()


def credential(name: str, settings: Settings | None = None) -> str | None:
    """The secret setting ``name`` (``openai_api_key``, ``replicate_api_token``, ``aws_access_key``,
    ``aws_access_secret``) from the environment or ``.env``; None when it is unset or blank.
    Every backend reads its key through here."""
    value = getattr(settings or load_settings(), name)
    if value is None:
        return None
    return value.get_secret_value().strip() or None


def secret_values(settings: Settings | None = None) -> set[str]:
    """Every secret value set in the environment or in the settings."""
    values = {
        value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH
    }
    settings = settings or load_settings()
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr) and len(value.get_secret_value()) >= _MIN_SECRET_LENGTH:
            values.add(value.get_secret_value())
    return values


def redact(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """Replace each of ``secrets`` (None: every secret this process knows of) in ``text`` with ``***``."""
    known = secret_values() if secrets is None else {secret for secret in secrets if secret}
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from every record's final message."""

    def __init__(self, secrets: set[str] | None = None) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg = redact(message, self._secrets if self._secrets is not None else secret_values())
        record.args = None
        return True
