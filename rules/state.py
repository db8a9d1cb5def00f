"""Per-entity state kept by a pack, with dirty tracking so only what changed is persisted."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class States(Generic[S]):
    """``states[id]`` creates the entity's state on first use; :meth:`dump_dirty` hands out what changed."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls
        self.items: dict[str, S] = {}
        self.dirty: set[str] = set()
        self._names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        blank = cls()
        # container fields must come back as containers, or evaluation fails later, far from the cause
        self._shapes = {n: type(getattr(blank, n)) for n in self._names
                        if isinstance(getattr(blank, n), (dict, list))}

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
        # shallow: the caller serialises at once (asdict's deep copy dominated the profile)
        out = {k: dict(vars(self.items[k])) for k in self.dirty if k in self.items}
        self.dirty.clear()
        return out

    def load(self, key: str, data: dict[str, Any]) -> None:
        # fields added since the state was saved take their defaults; removed ones are dropped
        kept = {k: v for k, v in data.items() if k in self._names}
        for name, shape in self._shapes.items():
            if name in kept and not isinstance(kept[name], shape):
                raise ValueError(f"field {name!r} should be a {shape.__name__}, found {type(kept[name]).__name__}")
        self.items[key] = self.cls(**kept)
