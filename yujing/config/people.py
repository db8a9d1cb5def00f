"""People who receive warnings, wherever they sit in the tree."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class Role(enum.StrEnum):
    RESPONSIBLE = "responsible"  # 责任人
    DEPUTY = "deputy"  # 副责任人 / AB 角
    MONITOR = "monitor"  # 监测员
    GRID = "grid"  # 网格员
    DUTY = "duty"  # 值班室
    GROUP_LEADER = "group_leader"  # 组长
    HOUSEHOLD = "household"  # 户
    MAINTAINER = "maintainer"  # 设备运维


class Channel(enum.StrEnum):
    SMS = "sms"
    VOICE = "voice"


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default="", max_length=64)
    name: str
    role: Role
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +8613800000000")
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS])
    language: str = "zh"
