"""The duty office (值班室): who may log in, with which role, where the API listens. The ``duty:`` section.

    duty:
      host: 127.0.0.1            # loopback unless TLS is configured
      port: 8090
      tls: {cert_file: /etc/yujing/duty.crt, key_file: /etc/yujing/duty.key}
      accounts:
        - {user: li, role: operator, password_hash: "$argon2id$v=19$m=65536,t=3,p=4$…"}
        - {user: ops-bot, role: operator, token: {env: YUJING_DUTY_TOKEN_OPS}}
        - {user: wang, role: viewer, password_hash: {file: /etc/yujing/wang.hash}}

A password is never in YAML, only its argon2 hash (``python3 -m duty.accounts hash`` makes one); an API token
only by the variable or file that holds it.
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from yujing.config.secrets import Secret


class Role(enum.StrEnum):
    """``viewer`` reads; ``operator`` issues, lifts, silences, confirms; ``admin`` also reads the audit log."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 1, "operator": 2, "admin": 3}[self.value]

    def allows(self, needed: "Role") -> bool:
        return self.rank >= needed.rank


class Account(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    role: Role
    password_hash: str | Secret | None = Field(default=None, union_mode="left_to_right")
    token: Secret | None = None

    @model_validator(mode="after")
    def _can_log_in(self) -> "Account":
        if self.password_hash is None and self.token is None:
            raise ValueError("give a password_hash (argon2) or a token ({env: …} or {file: …})")
        if isinstance(self.password_hash, str) and not self.password_hash.startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash ($argon2id$…), never the password itself")
        return self


class TlsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: Path
    key_file: Path


class DutyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)  # 0: any free port (tests)
    tls: TlsConfig | None = None
    accounts: list[Account] = Field(default_factory=list)
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)  # a duty shift
    audit_log: str = ""  # default: <data_dir>/duty-audit.sqlite
    state: str = ""  # warnings issued from above: <data_dir>/duty-issued.sqlite
    client_id: str = "yujing-duty"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /health, as every part
    sender_name: str = "县防汛抗旱指挥部办公室"  # who the duty office's warnings name as their issuer
    default_expiry_s: float = Field(default=24 * 3600.0, gt=0)  # an operator's warning without an expiry lifts then
    # failed logins remembered for unknown user names and addresses (duty/throttle.py): memory an
    # unauthenticated caller cannot grow past this; the accounts' own names are always remembered
    login_max_tracked: int = Field(default=10_000, ge=10)

    @model_validator(mode="after")
    def _loopback_or_tls(self) -> "DutyConfig":
        if self.tls is None and not is_loopback(self.host):
            raise ValueError(f"host {self.host!r} is not loopback: configure tls (cert_file, key_file) to listen there")
        users = [a.user for a in self.accounts]
        if len(users) != len(set(users)):
            raise ValueError("an account user name is used twice")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
