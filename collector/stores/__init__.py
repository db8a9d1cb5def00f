"""Where readings go: one small interface (:class:`Store`) and a registry keyed by the YAML ``type:``.

    async with open_store(cfg.collector.store, cfg) as store:
        await store.write(readings)           # raises StoreError when the database is away
        rows = await store.readings(site="s1") # read back (tests, drills)
"""

from __future__ import annotations

from collector.stores.base import BatchRejected, Store, open_store, register

from collector.stores import influx_v1, influx_v2, sqlite  # noqa: F401,E402  (register themselves)

__all__ = ["BatchRejected", "Store", "open_store", "register"]
