"""How every part reaches the MQTT broker, and the embedded one for the demo."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.secrets import Secret


class Tls(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate, for per-gateway mutual TLS
    key_file: Path | None = None
    insecure: bool = False  # skip hostname checks: test rigs only


class MqttConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    embedded: bool = False  # start an in-process broker (amqtt) on host:port: demo only
    username: str | None = None
    password: Secret | None = None
    tls: Tls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_prefix: str = Field(default="yujing", pattern=r"^[A-Za-z0-9_\-/]+$")
    # appended to every client id this deployment's parts use: two deployments on one broker (a drill beside
    # the live system) then never share a session, and neither takes the other's connection over
    client_id_suffix: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_\-]*$")
