"""Secrets are named in YAML, never written there: an environment variable or a file."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator


class Secret(BaseModel):
    """``{env: TWILIO_AUTH_TOKEN}`` or ``{file: /etc/yujing/twilio.token}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Secret":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a path); never the secret itself")
        return self

    def get(self) -> str:
        """The secret's value; raises ``LookupError`` naming where it was looked for. Never logged (redacted)."""
        from yujing.log import register_secret

        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise LookupError(f"environment variable {self.env} is not set")
            register_secret(value)
            return value
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LookupError(f"secret file {self.file}: {exc.strerror}") from None
        register_secret(value)
        return value

    def __repr__(self) -> str:  # never the value
        return f"Secret(env={self.env!r})" if self.env else f"Secret(file={str(self.file)!r})"
