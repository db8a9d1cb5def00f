"""MQTT topic names, in one place. ``prefix`` is ``mqtt.topic_prefix`` (default ``yujing``).

    {prefix}/readings/{gateway}        ReadingBatch (or a single Reading) JSON, QoS 1
    {prefix}/status/{gateway}          gateway heartbeat JSON, retained (``outbox_dropped``: readings lost, cumulative)
    {prefix}/loss/{component}          readings a component had to drop (full spool or disk), cumulative JSON, retained
    {prefix}/warnings/{hazard}/{site}  HazardWarning JSON, QoS 1
    {prefix}/cap/{hazard}/{site}       OASIS CAP 1.2 XML of the same warning
    {prefix}/deadletter/{reason}       rejected payloads, for inspection
"""

from __future__ import annotations


def readings(prefix: str, gateway: str = "+") -> str:
    return f"{prefix}/readings/{gateway}"


def status(prefix: str, gateway: str = "+") -> str:
    return f"{prefix}/status/{gateway}"


def loss(prefix: str, component: str = "+") -> str:
    """``{"component": "collector-<id>", "dropped": <cumulative int>, "reason": "spool-full", "ts": ISO-8601}``."""
    return f"{prefix}/loss/{component}"


def warnings(prefix: str, hazard: str = "+", site: str = "+") -> str:
    return f"{prefix}/warnings/{hazard}/{site}"


def cap(prefix: str, hazard: str = "+", site: str = "+") -> str:
    return f"{prefix}/cap/{hazard}/{site}"


def deadletter(prefix: str, reason: str = "+") -> str:
    return f"{prefix}/deadletter/{reason}"


def gateway_of(topic: str) -> str:
    """The gateway id in a readings or status topic (its last level)."""
    return topic.rsplit("/", 1)[-1]
