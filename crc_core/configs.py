"""Step configs as data: one way to turn a frozen config dataclass into JSON and back.

Every step's config (``SplitConfig``, ``LabelConfig``, ``PreprocessConfig``, ...) inherits
:class:`JsonConfig`, so the page that starts a worker, the CLI's ``--config FILE``, the files saved
beside a step's output and a notebook all read and write the same document. Unknown keys are
refused by name (a typo must not silently fall back to a default), and the fingerprint names a
config in file names and run records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, TypeVar

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
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CrcInputError(
                f"{where}unknown setting(s) {', '.join(map(repr, unknown))} for {cls.__name__}. "
                f"Known settings: {', '.join(known)}."
            )
        try:
            return cls(**{k: _frozen(v) for k, v in values.items()})
        except CrcInputError as exc:
            raise CrcInputError(f"{where}{exc}") from exc
        except TypeError as exc:  # a value of the wrong kind that __post_init__ did not name
            raise CrcInputError(f"{where}a setting has the wrong kind of value ({exc}).") from exc

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
