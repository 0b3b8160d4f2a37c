"""One encoder/decoder for every record that crosses a stage boundary, driven by its type hints.

A record is a frozen dataclass; its field annotations are the schema. :func:`decode` turns parsed
JSON (or a checkpoint's plain dict) into the record, checking each value against its hint, turning
lists into tuples and nested dicts into nested records; :func:`encode` is the inverse. What the
hints cannot say (a path inside the bundle, a channel count) stays in the record's
``__post_init__``. Why our own ~200 lines and not msgspec, cattrs or pydantic: see "Records" in
docs/architecture.md (in short: unknown keys must survive a round trip in ``extra``, and the error
must be our one-line error naming the field and the file; none of the three keeps unknown keys of a
plain dataclass, and the runtime's base install stays free of another compiled dependency).

Conventions a record may use:

- ``extra: dict[str, Any]`` (``compare=False``): keys the record does not know, kept so a newer
  writer's additions survive an older reader's read/write.
- ``field(metadata=OMIT_NONE)`` or a class attribute ``__omit_none__ = True``: a None value is left
  out of the encoded dict (fields added after files were written keep those files' shape).
  ``metadata={"keep_none": True}`` keeps one field's null in such a class (a key writers always wrote).
- a classmethod ``_upgrade(d) -> d``: rewrites an older shape before decoding (renamed keys,
  defaults that depend on another key).
- ``field(metadata=REQUIRED)``: a default for Python callers, but a stored file must have the key.
- ``Positive``: ``Annotated[int, Positive]`` refuses 0 and negatives.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from cmkd_edge.errors import BundleError, CmkdError

EXTRA = "extra"
OMIT_NONE = {"omit_none": True}
#: a field with a default for Python callers that a stored file must still hold
REQUIRED = {"required": True}


class Positive:
    """``Annotated[int, Positive]``: an integer above zero."""


class _Bad(Exception):
    """A value at ``path`` does not fit its hint; turned into the caller's error at the top."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path, self.message = path, message


def decode(cls: type, data: Any, *, what: str = "manifest", source: Any = None,
           error: type[CmkdError] = BundleError, where: str = "") -> Any:
    """``data`` (parsed JSON / a plain dict) as a ``cls`` record, every field checked.

    Args:
        what: the word before "field" in an error (``manifest``, ``checkpoint``, ``report``).
        source: the file the data came from, named in the error.
        error: the CmkdError subclass to raise.
        where: the field path of ``data`` inside a larger document (``quantization.onnxruntime:int8``).
    Raises:
        ``error``: one line naming the field (``'artifacts[0].opset'``), what was expected and the
        file; a check in a record's ``__post_init__`` keeps its own message, with the file added.
    """
    try:
        return _decode(cls, data, where)
    except _Bad as exc:
        field = f"{what} field {exc.path!r} " if exc.path else f"{what} "
        raise error(field + exc.message + _in(source)) from None
    except CmkdError as exc:
        if source is None and isinstance(exc, error) and what == "manifest":
            raise
        message = exc.message
        if what != "manifest" and message.startswith("manifest field"):
            message = what + message[len("manifest"):]  # a record's own check, in a checkpoint
        raise error(message + _in(source), exc.hint) from None


def _in(source: Any) -> str:
    return f" (in {source})" if source is not None else ""


def encode(obj: Any) -> Any:
    """A record tree as JSON-ready dicts and lists: ``extra`` merged back in, a ``schema_version``
    field written first (a manifest reads top-down), None left out where a field says so."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        names = [f.name for f in dataclasses.fields(obj)]
        if "schema_version" in names:
            out["schema_version"] = obj.schema_version  # type: ignore[attr-defined]
        omit_all = getattr(type(obj), "__omit_none__", False)
        for f in dataclasses.fields(obj):
            if f.name in (EXTRA, "schema_version") or not f.init:
                continue
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_none", omit_all and not f.metadata.get("keep_none")):
                continue
            out[f.name] = encode(value)
        out.update(getattr(obj, EXTRA, None) or {})
        return out
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def check(obj: Any, where: str | None = None) -> None:
    """Check a record built in Python (not decoded) against its hints: the same rules as
    :func:`decode`, so a writer cannot put a value on disk that a reader would refuse.

    Called by a record's ``__post_init__``; ``where`` defaults to the class's ``_where``.
    """
    cls = type(obj)
    where = getattr(cls, "_where", "") if where is None else where
    try:
        for f in dataclasses.fields(obj):
            if f.name != EXTRA and f.init:
                _check(_hints(cls)[f.name], getattr(obj, f.name), _join(where, f.name))
    except _Bad as exc:
        raise getattr(cls, "_error", BundleError)(
            f"{getattr(cls, '_what', 'manifest')} field {exc.path!r} {exc.message}") from None


class Record:
    """Base of every record: ``from_dict``/``to_dict`` through the codec.

    Class attributes: ``_what`` (the word before "field" in errors), ``_where`` (the record's path
    when decoded on its own, e.g. ``preprocess``), ``_error`` (the CmkdError subclass).
    """

    _what: ClassVar[str] = "manifest"
    _where: ClassVar[str] = ""
    _error: ClassVar[type[CmkdError]] = BundleError

    @classmethod
    def from_dict(cls, d: Any, *, source: Any = None, where: str | None = None) -> Any:
        """Decode ``d``; the error names the field (under ``where``) and ``source``."""
        return decode(cls, d, what=cls._what, source=source, error=cls._error,
                      where=cls._where if where is None else where)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict; ``type(r).from_dict(r.to_dict()) == r``."""
        return encode(self)

    def __post_init__(self) -> None:
        check(self)


# -- the walk -------------------------------------------------------------------------------------
@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _got(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _decode(tp: Any, value: Any, path: str) -> Any:
    """``value`` as type ``tp`` (lists -> tuples, dicts -> records, ints -> floats where a float is
    expected); raises _Bad naming ``path``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        out = _decode(args[0], value, path)
        if Positive in args[1:] and out is not None and out <= 0:
            raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
        return out
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp):
        return _decode_record(tp, value, path)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value, path)
            except _Bad as exc:
                if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                    raise  # the record's own message names the inner field
                if exc.path != path:
                    raise
        raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise _Bad(path, f"is {_got(value)} (expected one of {', '.join(map(str, args))})")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
            return tuple(_decode(a, v, _join(path, i)) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_decode(item, v, _join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Bad(path, f"must be an object, got {_got(value)}")
        vt = args[1] if args else Any
        return {k: _decode(vt, v, _join(path, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:
        raise TypeError(f"the record codec has no rule for {tp!r} (at {path})")
    raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")


def _decode_record(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _Bad(path, f"must be an object, got {_got(value)}")
    upgrade = getattr(cls, "_upgrade", None)
    if upgrade is not None:
        value = upgrade(value)
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    known: set[str] = set()
    has_extra = False
    for f in dataclasses.fields(cls):
        if f.name == EXTRA:
            has_extra = True
            continue
        if not f.init:
            continue
        known.add(f.name)
        if f.name not in value:
            if f.metadata.get("required") or (f.default is dataclasses.MISSING
                                              and f.default_factory is dataclasses.MISSING):
                raise _Bad(_join(path, f.name), "is missing")
            continue
        kwargs[f.name] = _decode(hints[f.name], value[f.name], _join(path, f.name))
    if has_extra:
        kwargs[EXTRA] = {k: v for k, v in value.items() if k not in known}
    return cls(**kwargs)


def _check(tp: Any, value: Any, path: str) -> None:
    """:func:`_decode`'s rules for a value already in its Python form (tuples, records)."""
    if dataclasses.is_dataclass(tp) and isinstance(value, tp):
        return  # a record checks itself in its own __post_init__
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple and isinstance(value, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            for i, v in enumerate(value):
                _check(args[0], v, _join(path, i))
            return
        if len(args) == len(value):
            for i, (a, v) in enumerate(zip(args, value, strict=True)):
                _check(a, v, _join(path, i))
            return
        raise _Bad(path, f"must be {describe(tp)}, got {_got(list(value))}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        for arg in args:
            try:
                _check(arg, value, path)
                return
            except _Bad:
                continue
        raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
    if origin is Annotated:
        _check(args[0], value, path)
        _decode(tp, value, path)
        return
    if origin is tuple or (origin in (list, dict) and isinstance(value, tuple)):
        raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
    if dataclasses.is_dataclass(tp):
        raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
    if origin is list and isinstance(value, list):
        for i, v in enumerate(value):
            _check(args[0] if args else Any, v, _join(path, i))
        return
    if (origin is dict or tp is dict) and isinstance(value, dict):
        for k, v in value.items():
            _check(args[1] if args else Any, v, _join(path, k))
        return
    if origin in (list, dict) or tp is dict:
        raise _Bad(path, f"must be {describe(tp)}, got {_got(value)}")
    if tp is float and isinstance(value, float):
        return
    _decode(tp, value, path)


def describe(tp: Any) -> str:
    """A type hint in the words an error message uses (``a positive integer or null``)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        base = describe(args[0])
        return base.replace("an integer", "a positive integer") if Positive in args[1:] else base
    if origin is Union or origin is types.UnionType:
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) == 2 and all(a in (float, int) for a in args):
            return "[lo, hi]"
        return f"a list of {len(args)} values"
    if origin in (tuple, list):
        inner = describe(args[0]) if args else "values"
        words = {"a string": "strings", "an integer": "integers", "a number": "numbers",
                 "a positive integer": "positive integers", "true or false": "booleans"}
        return f"a list of {words.get(inner, inner)}"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))
