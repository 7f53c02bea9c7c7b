"""Step configs as data: one way to turn a frozen config dataclass into JSON and back.

Every step's config (``SplitConfig``, ``LabelConfig``, ``PreprocessConfig``, ...) inherits
:class:`JsonConfig`, so the page that starts a worker, the CLI's ``--config FILE``, the files saved
beside a step's output and a notebook all read and write the same document. Unknown keys are
refused by name (a typo must not silently fall back to a default), every value is checked against
its field's type hint before the config is built (``"seed": 1.5`` or ``"pseudonymise": "no"`` is
refused naming the file, the key and what it takes; nothing is read by truthiness), and the
fingerprint names a config in file names and run records.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union

from crc_core.errors import CrcInputError

Config = TypeVar("Config", bound="JsonConfig")


def _plain(value: Any) -> Any:
    """JSON-ready: tuples become lists, mappings plain dicts, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _frozen(value: Any) -> Any:
    """JSON lists back to the tuples a frozen config holds (mappings are left for the config)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# Types: a document's values against the fields' type hints


class _Mismatch(Exception):
    """A value that does not fit its type hint, at ``path`` (``finetune.epochs``, ``targets[1]``)."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        super().__init__(path)
        self.path, self.expected, self.value = path, expected, value


def _shown(value: Any) -> str:
    """A document's value as the user wrote it, with its JSON kind: ``"no" (text)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        text = json.dumps(_plain(value), ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, str):
        kind = "text"
    elif isinstance(value, numbers.Real):
        kind = "a number"
    elif isinstance(value, (list, tuple)):
        kind = "a list"
    elif isinstance(value, AbcMapping):
        kind = "an object"
    else:
        kind = type(value).__name__
    return f"{text} ({kind})"


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _expected(hint: Any) -> str:
    """What a hint takes, in the words of a JSON document."""
    if hint is Any:
        return "anything"
    if hint is type(None):
        return "null"
    if _is_union(hint):
        return " or ".join(_expected(h) for h in typing.get_args(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "text"
    if isinstance(hint, type) and issubclass(hint, Path):
        return "a path (text)"
    if isinstance(hint, type) and issubclass(hint, JsonConfig):
        return f"an object of {hint.__name__} settings"
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_expected(a) for a in args)})"
        return f"a list of {_expected(args[0])}" if args else "a list"
    if origin in (dict, AbcMapping) or hint in (dict, AbcMapping):
        return f"an object whose values are {_expected(args[1])}" if args else "an object"
    return getattr(hint, "__name__", str(hint))


def _check(value: Any, hint: Any, path: str) -> None:
    """Raise :class:`_Mismatch` unless ``value`` fits ``hint``.

    JSON's kinds are kept apart: a bool is never a number (``true`` is not 1), a whole number is
    never a bool, ``1.5`` is not a whole number, a number is not text; only a float field takes a
    whole number (``"lr": 1``). A list field also takes one item written without the list
    (``"targets": "tsr"``), which the configs have always read as that item alone.
    """
    if hint is Any:
        return
    if hint is type(None):
        if value is not None:
            raise _Mismatch(path, "null", value)
        return
    if _is_union(hint):
        deeper: list[_Mismatch] = []
        for member in typing.get_args(hint):
            try:
                _check(value, member, path)
                return
            except _Mismatch as exc:
                if exc.path != path:
                    deeper.append(exc)
        # The member whose shape fitted says more than the union (``variable_types.age``).
        raise deeper[0] if deeper else _Mismatch(path, _expected(hint), value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise _Mismatch(path, _expected(hint), value)
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise _Mismatch(path, _expected(hint), value)
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Mismatch(path, _expected(hint), value)
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise _Mismatch(path, "a finite number" if isinstance(value, float) else _expected(hint), value)
        return
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch(path, _expected(hint), value)
        return
    if isinstance(hint, type) and issubclass(hint, Path):
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise _Mismatch(path, _expected(hint), value)
        return
    if isinstance(hint, type) and issubclass(hint, JsonConfig):
        if isinstance(value, hint):
            return
        if not isinstance(value, AbcMapping):
            raise _Mismatch(path, _expected(hint), value)
        hint._check_document(value, prefix=f"{path}.")
        return
    if origin in (tuple, list) or hint in (tuple, list):
        if isinstance(value, str) and origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] is str:
            return  # one item written without its list
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(path, _expected(hint), value)
        if not args:
            return
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(path, _expected(hint), value)
            for i, (item, item_hint) in enumerate(zip(value, args)):
                _check(item, item_hint, f"{path}[{i}]")
            return
        for i, item in enumerate(value):
            _check(item, args[0], f"{path}[{i}]")
        return
    if origin in (dict, AbcMapping) or hint in (dict, AbcMapping):
        if not isinstance(value, AbcMapping):
            raise _Mismatch(path, _expected(hint), value)
        if args:
            for key, item in value.items():
                _check(key, args[0], f"{path} (key {key!r})")
                _check(item, args[1], f"{path}.{key}")
        return
    # A hint this checker does not know is a programming error, found by the common config test.
    raise TypeError(f"{path}: no type check for the hint {hint!r}")


@functools.lru_cache(maxsize=None)
def _field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


class JsonConfig:
    """Mixin for frozen config dataclasses: ``to_dict``/``from_dict``, JSON files, a fingerprint.

    A subclass may override :meth:`to_dict` for a friendlier document (e.g. a mapping instead of
    pairs) as long as its ``__post_init__`` accepts that form back.
    """

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[Config], values: Mapping[str, Any], *, source: str | None = None) -> Config:
        """The config from a document; unknown keys and bad values are refused, naming ``source``."""
        where = f"{source}: " if source else ""
        if not isinstance(values, Mapping):
            raise CrcInputError(
                f"{where}a {cls.__name__} must be a JSON object of settings, not {type(values).__name__}."
            )
        try:
            cls._check_document(values)
        except CrcInputError as exc:
            raise CrcInputError(f"{where}{exc}") from None
        try:
            return cls(**{k: _frozen(v) for k, v in values.items()})
        except CrcInputError as exc:
            raise CrcInputError(f"{where}{exc}") from exc
        except TypeError as exc:  # a value of the wrong kind that __post_init__ did not name
            raise CrcInputError(f"{where}a setting has the wrong kind of value ({exc}).") from exc

    @classmethod
    def _check_document(cls, values: Mapping[str, Any], *, prefix: str = "") -> None:
        """Refuse unknown keys and values whose kind does not fit the field's type hint, naming the
        key path (``finetune.epochs``), what it takes and what was given."""
        hints = _field_hints(cls)
        unknown = sorted(set(map(str, values)) - set(hints))
        if unknown:
            raise CrcInputError(
                f"unknown setting(s) {', '.join(repr(prefix + k) for k in unknown)} for {cls.__name__}. "
                f"Known settings: {', '.join(hints)}."
            )
        for name, value in values.items():
            try:
                _check(value, hints[name], f"{prefix}{name}")
            except _Mismatch as exc:
                raise CrcInputError(
                    f"the setting {exc.path!r} must be {exc.expected}; got {_shown(exc.value)}."
                ) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls: type[Config], text: str, *, source: str | None = None) -> Config:
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise CrcInputError(f"{source or 'The config'} is not valid JSON ({exc}). Fix or delete it.") from exc
        return cls.from_dict(values, source=source)

    def fingerprint(self) -> str:
        """12 hex digits of SHA-256 over the canonical JSON: equal configs, equal fingerprints."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def save(self, path: Path | str) -> Path:
        """Write the config as JSON, atomically."""
        from crc_core.workspace import atomic_write_text

        return atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls: type[Config], path: Path | str) -> Config:
        """Read a config file written by :meth:`save` (or by hand); names the file on any problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CrcInputError(f"The config file {path} does not exist. Check the path.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CrcInputError(f"The config file {path} cannot be read ({exc}).") from exc
        return cls.from_json(text, source=str(path))
