"""Upper-level platforms that send Yujing CAP 1.2 documents: the ``upstream:`` section.

    upstream:
      sources:
        - id: zx-met                          # the URL path: POST /api/v1/cap/zx-met
          sender: zx-met@cma.gov.cn           # CAP <sender>: anything else from this source is refused
          authority: 忠县气象台                # named in the message text when <senderName> is empty
          auth: {bearer: {env: YUJING_CAP_ZXMET_TOKEN}}      # or {hmac: {file: /etc/yujing/zxmet.key}}
          may_address: [zhongxian]            # area ids (and everything under them) it may warn
          certificate: /etc/yujing/zxmet.pem  # optional: then every document must carry a valid XML signature
          feed: {url: https://…/atom.xml, interval_s: 120, max_interval_s: 1800, ca_file: …}   # optional
          mqtt_topic: yujing/upstream/cap/zx-met   # optional: documents on the deployment's broker (ACL: deploy/)
      max_bytes: 262144
      events: [{match: 地质灾害, hazard: landslide}, …]   # before the defaults (upstream/mapping.py)
      deadletter_max_rows: 10000              # refused documents kept, newest first (upstream/deadletter.py)
      deadletter_max_bytes: 67108864          # ... and at most this many of their bytes
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from yujing.config.secrets import Secret
from yujing.model import Hazard


class SourceAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bearer: Secret | None = None  # Authorization: Bearer <token>
    hmac: Secret | None = None  # X-Yujing-Timestamp + X-Yujing-Signature: sha256=hex(HMAC(key, ts + "." + body))

    @model_validator(mode="after")
    def _one(self) -> "SourceAuth":
        if (self.bearer is None) == (self.hmac is None):
            raise ValueError("give exactly one of bearer or hmac")
        return self


class FeedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    interval_s: float = Field(default=120.0, ge=5.0)
    max_interval_s: float = Field(default=1800.0, ge=5.0)  # backoff on errors stops doubling here
    ca_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    sender: str = Field(min_length=1, pattern=r"^[^\s,<&]+$")  # CAP: no spaces, commas, < or &
    authority: str = ""
    auth: SourceAuth | None = None  # required for POST; feeds and MQTT rely on TLS and the broker's ACL
    may_address: list[str] = Field(default_factory=list)  # empty: the whole tree
    certificate: Path | None = None
    feed: FeedConfig | None = None
    mqtt_topic: str = ""


class EventRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str = Field(min_length=1)  # a substring of <event>, an <eventCode> value or the <headline>
    hazard: Hazard


class UpstreamConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: list[Source] = Field(default_factory=list)
    max_bytes: int = Field(default=256 * 1024, ge=1024, le=10 * 1024 * 1024)
    events: list[EventRule] = Field(default_factory=list)
    deadletter: str = ""  # <data_dir>/upstream-deadletter.sqlite
    # refused documents kept (anyone reaching POST /cap/… can be refused): the newest, within both bounds
    deadletter_max_rows: int = Field(default=10_000, ge=1)
    deadletter_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)  # of kept bytes, 64 KB a document at most
    feeds: str = ""  # <data_dir>/upstream-feeds.sqlite: what each feed's poller fetched, across restarts
