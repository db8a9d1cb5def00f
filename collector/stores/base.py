"""The store seam: ``async with`` a store, ``await write(batch)``, ``await readings(...)``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Protocol

from collector.rows import Row
from yujing.errors import StoreError
from yujing.model import Reading

if TYPE_CHECKING:
    from yujing.compose import Config  # the composed deployment (top floor); a type only


class BatchRejected(StoreError):
    """The database is up but refuses these points for good (bad data): retrying cannot help."""


class Store(Protocol):
    """A database the collector writes to. Writes are idempotent per reading where the database allows."""

    async def __aenter__(self) -> "Store": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def write(self, batch: list[Reading] | list[Row]) -> None:
        """Store every reading or raise StoreError (unreachable, refused): the caller spools and retries.

        The collector hands rows (:mod:`collector.rows`); ``Reading`` objects are taken too."""

    async def readings(self, site: str | None = None, quantity: str | None = None,
                       since: datetime | None = None) -> list[Reading]:
        """Stored readings, oldest first (for tests and drills; not a query API)."""


_REGISTRY: dict[str, Callable[[Any, "Config | None"], Store]] = {}


def register(kind: str) -> Callable[[Callable[[Any, "Config | None"], Store]], Callable[[Any, "Config | None"], Store]]:
    def add(factory: Callable[[Any, "Config | None"], Store]) -> Callable[[Any, "Config | None"], Store]:
        _REGISTRY[kind] = factory
        return factory

    return add


def open_store(store_cfg: Any, config: "Config | None" = None) -> Store:
    """The store for a ``collector.store`` section (use as ``async with``)."""
    try:
        factory = _REGISTRY[store_cfg.type]
    except KeyError:
        raise StoreError(f"no store of type {store_cfg.type!r} (known: {sorted(_REGISTRY)})") from None
    return factory(store_cfg, config)
