"""Per-entity state kept by a pack, with dirty tracking so only what changed is persisted."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class States(Generic[S]):
    """``states[id]`` creates the entity's state on first use; :meth:`dump_dirty` hands out what changed."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls
        self.items: dict[str, S] = {}
        self.dirty: set[str] = set()
        self._names = {f.name for f in fields(cls)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> S:
        st = self.items.get(key)
        if st is None:
            st = self.items[key] = self.cls()
        self.dirty.add(key)
        return st

    def get(self, key: str) -> S | None:
        return self.items.get(key)

    def __iter__(self):
        return iter(self.items.items())

    def touch(self, key: str) -> None:
        self.dirty.add(key)

    def dump_dirty(self) -> dict[str, Any]:
        out = {k: asdict(self.items[k]) for k in self.dirty if k in self.items}  # type: ignore[call-overload]
        self.dirty.clear()
        return out

    def load(self, key: str, data: dict[str, Any]) -> None:
        # fields added since the state was saved take their defaults; removed ones are dropped
        self.items[key] = self.cls(**{k: v for k, v in data.items() if k in self._names})
