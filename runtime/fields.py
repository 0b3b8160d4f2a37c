"""Validation of manifest JSON fields: each check raises a one-line BundleError naming the field.

Shared by the typed specs (``runtime.specs``) and the manifest (``runtime.manifest``); stdlib only.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from cmkd_edge.errors import BundleError

_MISSING = object()


def get_field(d: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
    if not isinstance(d, dict):
        raise BundleError(f"manifest field {where!r} must be an object, got {type(d).__name__}")
    if key not in d:
        if default is _MISSING:
            raise BundleError(f"manifest field '{where}.{key}' is missing".replace("'.", "'"),
                              "re-export the bundle with `cmkd-edge export`")
        return default
    return d[key]


def check_choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise BundleError(f"manifest field {where!r} is {value!r} (expected one of {', '.join(choices)})")
    return value


def str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BundleError(f"manifest field {where!r} must be a list of strings")
    return tuple(value)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_type(value: Any, where: str, kind: str) -> None:
    """Refuse a field of the wrong JSON type (so no TypeError/ValueError escapes later)."""
    ok = {"str": lambda v: isinstance(v, str), "int?": lambda v: v is None or is_int(v),
          "posint?": lambda v: v is None or (is_int(v) and v > 0),
          "num?": lambda v: v is None or is_num(v), "bool?": lambda v: v is None or isinstance(v, bool),
          "str?": lambda v: v is None or isinstance(v, str),
          "dict": lambda v: isinstance(v, dict), "dict?": lambda v: v is None or isinstance(v, dict)}[kind]
    if not ok(value):
        want = {"str": "a string", "int?": "an integer or null", "posint?": "a positive integer or null",
                "num?": "a number or null", "bool?": "true, false or null", "dict": "an object",
                "str?": "a string or null",
                "dict?": "an object or null"}[kind]
        raise BundleError(f"manifest field {where!r} must be {want}, got {json.dumps(value)[:40]}")


def extra_keys(d: dict[str, Any], cls: type) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k not in known}


def check_range(value: Any, where: str) -> None:
    if value is not None and not (isinstance(value, tuple) and len(value) == 2
                                  and all(is_num(v) for v in value)):
        raise BundleError(f"manifest field {where!r} must be [lo, hi] or null")


def as_tuple(value: Any) -> Any:
    """JSON lists become tuples (frozen, hashable); anything else is left for validation."""
    return tuple(value) if isinstance(value, list) else value


def as_ints(value: Any) -> Any:
    value = as_tuple(value)
    return tuple(int(v) for v in value) if isinstance(value, tuple) and all(
        is_int(v) for v in value) else value


def as_floats(value: Any) -> Any:
    value = as_tuple(value)
    return tuple(float(v) for v in value) if isinstance(value, tuple) and all(
        is_num(v) for v in value) else value


def plain(obj: Any) -> Any:
    """A dataclass tree as JSON-ready dicts and lists: ``extra`` keys merged back in, a
    ``schema_version`` field written first (so a manifest reads top-down)."""
    if hasattr(obj, "__dataclass_fields__"):
        out: dict[str, Any] = {}
        names = [f.name for f in fields(obj)]
        if "schema_version" in names:
            out["schema_version"] = obj.schema_version
        for name in names:
            if name in ("extra", "schema_version"):
                continue
            out[name] = plain(getattr(obj, name))
        out.update(obj.extra)
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj
