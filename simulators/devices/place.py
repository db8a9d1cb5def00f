"""Where simulated devices answer in a drill or a test, away from any real device's address.

A drill may run beside the live system, so its devices must never answer where the live devices are,
and a pty must never replace a real /dev/tty node. Each kind's ``relocate(device, place)`` (in its
``sim.py``) moves a device's endpoints here: loopback ports and ptys of the place's own, MQTT topics
under its prefix. Devices that shared an endpoint (an RS-485 bus, a Modbus gateway, an SL651 listener)
still share one after the move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.ports import free_port


@dataclass
class Place:
    ttys: Path  # the directory where simulated serial lines appear (symlinks to ptys)
    prefix: str = ""  # MQTT topics of simulated sources go under it ("" leaves them)
    # MQTT sources with a broker of their own publish here instead (None: to the deployment's broker)
    broker: tuple[str, int] | None = None
    taken: dict[tuple, Any] = field(default_factory=dict)  # an old endpoint → where it answers now

    def port(self, *endpoint: Any) -> int:
        """A free loopback port for ``endpoint`` (the same one for the same endpoint)."""
        if ("port", *endpoint) not in self.taken:
            self.taken["port", *endpoint] = free_port()
        return self.taken["port", *endpoint]

    def tty(self, path: str) -> str:
        """A pty path for the serial line at ``path`` (the same one for the same line)."""
        if ("tty", path) not in self.taken:
            self.taken["tty", path] = str(self.ttys / f"tty-{sum(k[0] == 'tty' for k in self.taken)}")
        return self.taken["tty", path]

    def topic(self, topic: str) -> str:
        return f"{self.prefix}/{topic}" if self.prefix else topic
