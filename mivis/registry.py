"""A small named registry. One instance each for architectures, defenses, attacks, metrics, priors.

Each entry carries its parameter declarations, so the CLI and the UI list and configure
entries from the same source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .params import ParamError, ParamSet


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    params: ParamSet
    help: str = ""
    meta: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any = None, *, params: ParamSet | None = None,
                 help: str = "", **meta) -> Callable:
        def deco(target):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, target, params or ParamSet(), help, dict(meta))
            return target
        return deco(obj) if obj is not None else deco

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ParamError(f"unknown {self.kind} {name!r}; choose one of: "
                             f"{', '.join(self.names())}") from None

    def names(self, **where) -> list[str]:
        return [n for n, e in self._entries.items()
                if all(e.meta.get(k) == v for k, v in where.items())]

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
