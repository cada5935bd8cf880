"""Parameter declarations: declared once, they drive validation, CLI flags and UI widgets.

A `Param` says what a knob is (type, default, range or choices, help). A `ParamSet` validates a
config dict before any compute starts and raises `ParamError` naming the allowed values.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


MAX_LIST_ITEMS = 100_000  # a list parameter (e.g. identities 0-299) never expands beyond this


def _int_range(part, lo_bound=None, hi_bound=None) -> list:
    """'3-7' -> 3..7 (inclusive; e.g. the first 300 identities as 0-299); anything else unchanged.
    The ends are checked against the declared bounds before anything is expanded."""
    m = re.fullmatch(r"(-?\d+)-(-?\d+)", part) if isinstance(part, str) else None
    if not m:
        return [part]
    lo, hi = int(m.group(1)), int(m.group(2))
    if hi < lo or hi - lo >= MAX_LIST_ITEMS:
        raise ValueError(part)
    if (lo_bound is not None and lo < lo_bound) or (hi_bound is not None and hi > hi_bound):
        raise ValueError(part)
    return list(range(lo, hi + 1))


def _short(value: Any, n: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= n else r[:n - 3] + "..."


class ParamError(ValueError):
    """A parameter value outside what its declaration allows."""


FLOAT_LIST = "float_list"
INT_LIST = "int_list"
_TYPES = (int, float, str, bool, FLOAT_LIST, INT_LIST)


@dataclass(frozen=True)
class Param:
    name: str
    type: Any
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: Sequence[Any] | None = None
    optional: bool = False  # None is allowed (meaning "not set")
    step: float | None = None  # UI hint for sliders

    def __post_init__(self):
        if self.type not in _TYPES:
            raise TypeError(f"unsupported param type {self.type!r} for {self.name}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        kind = {int: "an integer", float: "a number", str: "text", bool: "true/false",
                FLOAT_LIST: "comma-separated numbers", INT_LIST: "comma-separated integers (a-b for a range)"}[self.type]
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        rng = f" in [{lo}, {hi}]" if (self.min is not None or self.max is not None) else ""
        return kind + rng

    def coerce(self, value: Any) -> Any:
        """Convert a value (possibly a CLI/URL string) to this param's type, then check it."""
        # "none" means "not set" unless it is itself one of the choices (e.g. augment=none)
        unset = ("",) if self.choices and "none" in self.choices else ("", "none")
        if value is None or (isinstance(value, str) and value.strip().lower() in unset):
            if self.optional:
                return None
            raise ParamError(f"{self.name}: a value is required ({self.allowed()})")
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    value = low in ("1", "true", "yes", "on")
                else:
                    value = bool(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                if isinstance(value, str):
                    value = float(value) if "." in value or "e" in value.lower() else int(value)
                    if isinstance(value, float) and not value.is_integer():
                        raise ValueError(value)
                value = int(value)
            elif self.type is float:
                value = float(value)
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError(value)
            elif self.type is str:
                value = str(value)
            else:  # list types
                if isinstance(value, str):
                    parts = [p for p in value.replace(" ", "").split(",") if p != ""]
                else:
                    parts = list(value)
                conv = float if self.type == FLOAT_LIST else int
                if len(parts) > MAX_LIST_ITEMS:
                    raise ValueError(value)
                if conv is int:
                    parts = [q for p in parts for q in _int_range(p, self.min, self.max)]
                    if len(parts) > MAX_LIST_ITEMS:
                        raise ValueError(value)
                value = [conv(p) for p in parts]
                if conv is float and any(v != v for v in value):
                    raise ValueError(value)
        except (TypeError, ValueError):
            raise ParamError(f"{self.name}: {_short(value)} is not {self.allowed()}") from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        items = value if isinstance(value, list) else [value]
        for v in items:
            if self.choices is not None and v not in self.choices:
                raise ParamError(f"{self.name}: {_short(v)} is not allowed; choose {self.allowed()}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                    raise ParamError(f"{self.name}: {_short(v)} is out of range; allowed: {self.allowed()}")


@dataclass(frozen=True)
class ParamSet:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def __init__(self, params: Iterable[Param] = ()):
        object.__setattr__(self, "params", tuple(params))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names: {names}")

    def __iter__(self):
        return iter(self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(p.name == name for p in self.params)

    def __add__(self, other: "ParamSet") -> "ParamSet":
        return ParamSet(self.params + other.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: (list(p.default) if isinstance(p.default, (list, tuple)) else p.default)
                for p in self.params}

    def validate(self, values: dict[str, Any] | None, *, context: str = "") -> dict[str, Any]:
        """Defaults filled in, every value coerced and range-checked; unknown keys refused."""
        values = dict(values or {})
        unknown = sorted(set(values) - {p.name for p in self.params})
        if unknown:
            where = f" for {context}" if context else ""
            known = ", ".join(p.name for p in self.params) or "(none)"
            raise ParamError(f"unknown parameter(s) {', '.join(unknown)}{where}; known: {known}")
        out = {}
        for p in self.params:
            out[p.name] = p.coerce(values[p.name]) if p.name in values else self.defaults()[p.name]
        return out

    def add_arguments(self, parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
        """One CLI flag per param; values stay strings and are coerced by `from_namespace`."""
        for p in self.params:
            flag = "--" + (prefix + p.name).replace("_", "-")
            metavar = "{" + ",".join(map(str, p.choices)) + "}" if p.choices else p.type.__name__.upper() \
                if isinstance(p.type, type) else "LIST"
            parser.add_argument(flag, dest=(prefix + p.name), default=None, metavar=metavar,
                                help=f"{p.help} (default: {_fmt(p.default)}; {p.allowed()})")

    def from_namespace(self, ns: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
        given = {p.name: getattr(ns, prefix + p.name) for p in self.params
                 if getattr(ns, prefix + p.name, None) is not None}
        return self.validate(given)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)
