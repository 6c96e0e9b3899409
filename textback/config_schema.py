"""Shared pieces of the configuration's schema (pydantic models: strict keys, secret references),
used by textback.config and the gateway settings. Not the database's schema: that is
textback/store/migrations.py."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored; no number is infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SecretRef(Strict):
    """Where a secret lives. Exactly one of `file` or `env`."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret now; raise ValueError naming where it was looked for."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
            return SecretStr(value)
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"secret file {self.file} is empty")
        return SecretStr(value)
