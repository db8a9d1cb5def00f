"""What ``yujing run`` simulates when a deployment has no real devices (the demo)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SimulationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: bool = True  # serve every configured device from a simulator
    twilio: bool = True  # run the Twilio stand-in and point alerts at it
    twilio_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port
    scenario: str | None = None  # scenario file (relative to the config directory)
    speed: float = Field(default=1.0, gt=0)
