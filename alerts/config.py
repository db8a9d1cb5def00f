"""Who is told what, how, and through which provider."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.secrets import Secret


class TwilioConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: Secret | None = None
    from_number: str = Field(default="+15005550006", pattern=r"^\+[1-9][0-9]{6,14}$")
    base_url: str | None = None  # None: Twilio's cloud; a URL: a stand-in of its REST API


class AlertsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    log: str = ""  # notification log; default: <data_dir>/alerts.sqlite
