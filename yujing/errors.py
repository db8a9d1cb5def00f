"""Yujing's own errors: a short hierarchy, each carrying the context to act on."""

from __future__ import annotations


class YujingError(Exception):
    """Base of every error Yujing raises on purpose."""


class ConfigError(YujingError):
    """A configuration file is wrong. ``problems`` lists ``file:line: field: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class DeviceError(YujingError):
    """A field device did not answer or answered nonsense."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"device {device}: {message}")


class PayloadError(YujingError):
    """An inbound message could not be accepted. ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str, *, topic: str = "") -> None:
        self.reason = reason
        self.topic = topic
        super().__init__(f"{reason}: {message}" + (f" (topic {topic})" if topic else ""))


class StoreError(YujingError):
    """The database refused or could not be reached; the batch must be spooled."""
