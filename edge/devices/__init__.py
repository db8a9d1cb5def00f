"""Device kinds: each in its own folder here, found by discovery. Adding a kind adds a folder.

A kind's folder (``edge/devices/<folder>/``) holds everything about it, side by side:

    config.py           its pydantic model(s), ``type: Literal["<kind>"]``, listed in ``DEVICES``
    reader.py           its reader(s) (edge/devices/reader.py's interface), listed in ``READERS`` by kind
    sim.py              its simulator, for simulators/ and tests only (see below)
    *.example.yaml      example ``devices:`` that the tests validate and run against the simulator
    README.md           what it reads and how to configure it

One folder may hold a family of kinds that share code (``modbus/``: ``modbus_tcp`` and ``modbus_rtu``).

The floor: production code reaches ``config`` and ``reader`` only. ``sim.py`` is simulator code that lives
beside its device so that a kind is one folder; ``simulators/`` and ``testing/`` load it through
:meth:`Kind.load`, and nothing in edge/ (nor any stage) imports it (tests/test_floors.py checks both the
imports and that a running gateway never loaded one).

Discovery walks this package's ``__path__``, so a folder added to it is a kind like the shipped ones (the
tests add a throw-away kind that way). It runs once, on first use.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, get_args

if TYPE_CHECKING:
    from edge.devices.reader import Reader, ReaderContext


@dataclass(frozen=True)
class Kind:
    """One device ``type:``: its model, and the folder (package) that holds its reader, simulator, examples."""

    type: str
    model: type  # the pydantic model of its config
    package: str  # e.g. "edge.devices.modbus"
    folder: Path

    def load(self, part: str) -> ModuleType:
        """The kind's ``reader`` or ``sim`` module (imported on first use: pymodbus, pyserial, aiomqtt and
        the simulators load only for the kinds in use)."""
        return importlib.import_module(f"{self.package}.{part}")

    def examples(self) -> list[Path]:
        return sorted(self.folder.glob("*.example.yaml"))


def _kind_of(model: type) -> str:
    (name,) = get_args(model.model_fields["type"].annotation)
    return name


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every kind, by ``type:``, from each sub-package's ``config.DEVICES``."""
    out: dict[str, Kind] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        package = f"{__name__}.{info.name}"
        try:
            config = importlib.import_module(f"{package}.config")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.config":
                raise
            raise LookupError(f"{package}: every folder here is a device kind, and this one has no config.py "
                              "listing its models in DEVICES") from None
        folder = Path(config.__file__).parent
        for model in config.DEVICES:
            kind = _kind_of(model)
            if kind in out:
                raise LookupError(f"device type {kind!r} is declared by {out[kind].package} and {package}")
            out[kind] = Kind(kind, model, package, folder)
    return out


def kind(name: str) -> Kind:
    try:
        return kinds()[name]
    except KeyError:
        raise LookupError(f"no device kind {name!r} (known: {', '.join(sorted(kinds()))})") from None


def make_reader(device: Any, ctx: ReaderContext) -> Reader:
    """The reader of ``device``, from its kind's ``reader.READERS``."""
    readers = kind(device.type).load("reader").READERS
    try:
        factory = readers[device.type]
    except KeyError:
        raise LookupError(f"no reader registered for device type {device.type!r}") from None
    return factory(device, ctx)
