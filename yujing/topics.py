"""MQTT topic names, in one place. ``prefix`` is ``mqtt.topic_prefix`` (default ``yujing``).

    {prefix}/readings/{gateway}        ReadingBatch (or a single Reading) JSON, QoS 1
    {prefix}/status/{gateway}          gateway heartbeat JSON, retained (``outbox_dropped``: readings lost, cumulative)
    {prefix}/loss/{component}          readings a component had to drop (full spool or disk), cumulative JSON, retained
    {prefix}/warnings/{hazard}/{site}[/{rest}]  HazardWarning JSON, QoS 1, retained: one topic per warning key
    {prefix}/cap/{hazard}/{site}       OASIS CAP 1.2 XML of the warnings of (hazard, site) as grouped, retained
    {prefix}/deadletter/{reason}       rejected payloads, for inspection
    {prefix}/commands/alerts           the duty office's requests to alerts (confirm on behalf, resend), QoS 1
    {prefix}/silences                  the duty office's silences, the whole list, retained
"""

from __future__ import annotations


def readings(prefix: str, gateway: str = "+") -> str:
    return f"{prefix}/readings/{gateway}"


def status(prefix: str, gateway: str = "+") -> str:
    return f"{prefix}/status/{gateway}"


def loss(prefix: str, component: str = "+") -> str:
    """``{"component": "collector-<id>", "dropped": <cumulative int>, "reason": "spool-full", "ts": ISO-8601}``."""
    return f"{prefix}/loss/{component}"


def warnings(prefix: str, hazard: str | None = None, site: str = "+") -> str:
    """The topic of a (hazard, site)'s main warning; without a hazard, the filter for every warning."""
    if hazard is None:
        return f"{prefix}/warnings/#"
    return f"{prefix}/warnings/{hazard}/{site}"


def warning(prefix: str, hazard: str, site: str, key: str) -> str:
    """The topic of warning ``key``: each key its own retained slot, so a site's fire alarm and its fire-danger
    rating (``fire:S`` and ``fire:S:danger``) or two devices' faults never overwrite each other.

    ``{hazard}/{site}`` for the key ``hazard:site``; below it, what else the key says: ``fire/S/danger``,
    ``equipment/S/rg-1`` (``equipment:rg-1``), ``equipment/S/rg-1:fault``.
    """
    head = f"{hazard}:{site}"
    if key == head:
        return warnings(prefix, hazard, site)
    rest = key[len(head) + 1:] if key.startswith(head + ":") else key.split(":", 1)[-1]
    return f"{warnings(prefix, hazard, site)}/{rest.translate(_NOT_IN_A_LEVEL)}"


_NOT_IN_A_LEVEL = str.maketrans({"/": "_", "+": "_", "#": "_"})


def cap(prefix: str, hazard: str | None = None, site: str = "+") -> str:
    """The topic of a (hazard, site)'s CAP documents; without a hazard, the filter for every one."""
    if hazard is None:
        return f"{prefix}/cap/#"
    return f"{prefix}/cap/{hazard}/{site}"


def deadletter(prefix: str, reason: str = "+") -> str:
    return f"{prefix}/deadletter/{reason}"


def gateway_of(topic: str) -> str:
    """The gateway id in a readings or status topic (its last level)."""
    return topic.rsplit("/", 1)[-1]


def commands(prefix: str) -> str:
    return f"{prefix}/commands/alerts"


def silences(prefix: str) -> str:
    return f"{prefix}/silences"
