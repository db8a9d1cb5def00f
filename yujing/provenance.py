"""Which gateway may speak for which sensors: a reading's sender is its topic's gateway, never its payload's claim.

The broker's ACL lets a gateway's account publish only on ``{prefix}/readings/{its own id}``, so the topic is
what the broker authenticated. The ``gateway`` a batch or a reading names is the sender's claim, and a stolen
or misconfigured gateway can claim anything. So the collector and the rules accept a reading only when

- the topic names a gateway of the configuration (``gateways:``),
- the batch and the reading claim that gateway or none, and
- its site and sensor are one of that gateway's configured devices: the device's ``site``, and a sensor that is
  the device id or ``<device id>.<suffix>`` (how the edge names a device's several sensors).

A configuration that lists no gateways at all (a bench, a unit test of the collector alone) checks nothing:
``Senders.enforced`` is False and the services say so once at start.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Protocol


class Refusal(enum.StrEnum):
    """Why a reading was refused (a metric label and a dead-letter topic level)."""

    UNKNOWN_GATEWAY = "unknown-gateway"  # the topic names no configured gateway
    CLAIMS_ANOTHER = "claims-another-gateway"  # the batch or reading names a gateway other than its topic's
    NOT_ITS_DEVICE = "not-its-device"  # site or sensor is not one of the topic gateway's configured devices


class _Device(Protocol):
    id: str
    site: str


class _Gateway(Protocol):
    id: str

    @property
    def devices(self) -> Sequence[_Device]: ...


class Senders:
    """The configured gateways' devices, by gateway: ``refusal()`` says whether a reading may come from a topic."""

    def __init__(self, gateways: Iterable[_Gateway]) -> None:
        # gateway id -> {device id: site}
        self._devices: dict[str, dict[str, str]] = {g.id: {d.id: d.site for d in g.devices} for g in gateways}

    @property
    def enforced(self) -> bool:
        return bool(self._devices)

    def refusal(self, gateway: str, claimed: str, site: str, sensor: str) -> Refusal | None:
        """None if the gateway of the topic (``gateway``) may publish this reading, else why not.

        ``claimed`` is what the payload says (the reading's own ``gateway``, else its batch's; "" for none).
        """
        devices = self._devices.get(gateway)
        if devices is None:
            return Refusal.UNKNOWN_GATEWAY if self._devices else None
        if claimed and claimed != gateway:
            return Refusal.CLAIMS_ANOTHER
        device = sensor
        while devices.get(device) != site:
            cut = device.rfind(".")  # "<device id>.<suffix>": device ids may hold dots themselves
            if cut <= 0:
                return Refusal.NOT_ITS_DEVICE
            device = device[:cut]
        return None
