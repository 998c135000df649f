"""The ``config.json`` round trip shared by every model family's typed config.

Field names are the HF keys; keys a config does not model are kept in ``extra`` (which each
subclass declares as its last field) and written back on save.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from mmspeech.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound="ModelConfig")


@dataclasses.dataclass
class ModelConfig:
    """Base of the typed configs: ``from_dict`` / ``to_dict`` / ``replace`` / ``name_or_path``."""

    model_type: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
        """Build from a ``config.json`` dict; keys not modelled here go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "model_type"}
        try:
            return cls(**kwargs, extra=extra)  # type: ignore[call-arg]
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"Invalid {cls.model_type} config: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict, in the reference's spelling."""
        data: dict[str, Any] = dict(getattr(self, "extra", {}))
        for f in dataclasses.fields(self):
            if f.name != "extra":
                data[f.name] = _json_value(getattr(self, f.name))
        data["model_type"] = self.model_type
        return dict(sorted(data.items()))

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def name_or_path(self) -> str | None:
        """Where the config was loaded from (set by the checkpoint loader)."""
        return getattr(self, "extra", {}).get("_name_or_path")


def _json_value(value: Any) -> Any:
    """Tuples (also nested) as lists, the way ``config.json`` spells them."""
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value
