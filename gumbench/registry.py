"""Names with parameters, benchopt style: ``st-gumbel[tau=0.5]``, ``reinforce[baseline=loo,samples=4]``.

A :class:`Registry` maps names to plugin classes (:class:`gumbench.plugin.Plugin`): the
built-ins register when their package is imported, third-party classes come from an
entry-point group. This module imports no torch, so the CLI can parse and check names cheaply.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gumbench.errors import GumbenchError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Spec:
    """A parsed name: ``name`` and raw parameter values (lists where a grid was given)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def grid(self) -> list["Spec"]:
        """Expand list values into the cartesian product of single-valued specs."""
        keys = list(self.params)
        values = [v if isinstance(v, list) else [v] for v in self.params.values()]
        return [Spec(self.name, dict(zip(keys, combo))) for combo in itertools.product(*values)]


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise GumbenchError(f"unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise GumbenchError(f"unbalanced '[' in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


class Written:
    """A number parsed from a name that remembers how it was written: a text parameter (a folder, FSQ's levels)
    takes the text as given (``data_dir=007`` is the folder ``007``), a numeric one the number."""

    text: str


class WrittenInt(Written, int):
    pass


class WrittenFloat(Written, float):
    pass


def _written(kind: type, value, text: str):
    number = kind(value)
    number.text = text
    return number


def parse_number(text: str) -> int | float | None:
    """The one rule for numbers in names, for every numeric parameter: written in ASCII ('4', '007', '-2',
    '0.5', '1e-3', 'inf', 'nan'); leading zeros are allowed ('007' is 7). Digits of other scripts (a
    superscript '²', Arabic-Indic '٣', full-width '４'), which Python's int() or str.isdigit() would
    accept, are not digits here: such a value stays text, and a numeric parameter refuses it. None: not a number."""
    if not text.isascii():
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return None


def parse_value(text: str) -> Any:
    """'0.5' -> 0.5, '4' -> 4, 'true' -> True, '[1,2]' -> [1, 2], anything else stays a string.
    Numbers follow :func:`parse_number` and keep their written text (:class:`Written`)."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        if not inner:
            raise GumbenchError("an empty list [] gives no values to run")
        return [parse_value(p) for p in _split_top_level(inner)]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    number = parse_number(text)
    if number is None:
        return text
    return _written(WrittenInt if isinstance(number, int) else WrittenFloat, number, text)


def parse_spec(text: str) -> Spec:
    """Parse ``name`` or ``name[key=value,...]``; values may be lists ``[a,b]``."""
    if not isinstance(text, str) or not text.strip():
        raise GumbenchError(f"expected a name like 'st-gumbel[tau=0.5]', got {text!r}")
    text = text.strip()
    if "[" in text:
        if not text.endswith("]"):
            raise GumbenchError(f"{text!r}: parameters go in brackets at the end, like 'st-gumbel[tau=0.5]'")
        name, inner = text.split("[", 1)
        inner = inner[:-1]
    else:
        name, inner = text, ""
    name = name.strip()
    if not _NAME.match(name):
        raise GumbenchError(f"{text!r}: a name starts with a letter and has letters, digits, '-', '_' or '.'")
    params: dict[str, Any] = {}
    for item in _split_top_level(inner) if inner.strip() else []:
        if "=" not in item:
            raise GumbenchError(f"{text!r}: parameter {item!r} needs the form key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in params:
            raise GumbenchError(f"{text!r}: parameter {key!r} is given twice")
        params[key] = parse_value(value)
    return Spec(name, params)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_spec(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={format_value(v)}' for k, v in params.items())}]"


def coerce_params(
    owner: str, defaults: dict[str, Any], choices: dict[str, Iterable], given: dict[str, Any]
) -> dict[str, Any]:
    """Check names and types of ``given`` against ``defaults``; return the full resolved dict."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise GumbenchError(f"{owner} has no parameter {', '.join(map(repr, unknown))}; allowed: {allowed}")
    resolved = dict(defaults)
    for key, value in given.items():
        default = defaults[key]
        if isinstance(value, list):
            raise GumbenchError(f"{owner}: {key}={value} is a grid; build one object per value (Spec.grid())")
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise GumbenchError(f"{owner}: {key} must be true or false, got {value!r}")
        elif isinstance(default, int) and default is not None:
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                raise GumbenchError(f"{owner}: {key} must be an integer, got {value!r}")
            value = int(value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GumbenchError(f"{owner}: {key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            value = value.text if isinstance(value, Written) else format_value(value)
        resolved[key] = value
    for key, allowed in choices.items():
        allowed = tuple(allowed)
        if resolved[key] not in allowed:
            raise GumbenchError(
                f"{owner}: {key} must be one of {', '.join(map(format_value, allowed))}; got {resolved[key]!r}"
            )
    return resolved


class Registry:
    """Name -> plugin class, with lazily loaded entry points of ``group``."""

    def __init__(self, kind: str, group: str | None = None):
        self.kind = kind
        self.group = group
        self._classes: dict[str, type] = {}
        self._entry_points_loaded = False

    def register(self, cls: type | None = None, *, replace: bool = False) -> Callable:
        def add(cls: type) -> type:
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not _NAME.match(name):
                raise GumbenchError(f"{self.kind} class {cls.__qualname__} needs a 'name' like 'my-estimator'")
            if name in self._classes and self._classes[name] is not cls and not replace:
                raise GumbenchError(f"{self.kind} {name!r} is already registered by {self._classes[name].__module__}")
            self._classes[name] = cls
            return cls

        return add(cls) if cls is not None else add

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.group is None:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break the built-ins
                raise GumbenchError(f"could not load {self.kind} plugin {ep.name!r} ({ep.value}): {exc}") from exc
            if getattr(cls, "name", None) != ep.name:
                raise GumbenchError(
                    f"{self.kind} plugin entry point {ep.name!r} loads a class named {getattr(cls, 'name', None)!r}; "
                    "the names must match"
                )
            self.register(cls, replace=True)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        self._load_entry_points()
        try:
            return self._classes[name]
        except KeyError:
            raise GumbenchError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def create(self, spec: str | Spec, **overrides):
        """Build an instance from ``'name[k=v]'``; ``overrides`` win over the spec's values."""
        spec = spec if isinstance(spec, Spec) else parse_spec(spec)  # parse_spec refuses what is not a name
        cls = self.get(spec.name)
        params = {**spec.params, **overrides}
        return cls(**params)

    def classes(self) -> dict[str, type]:
        self._load_entry_points()
        return dict(sorted(self._classes.items()))
