"""The ``config.json`` round trip shared by the text decoders' typed configs.

Field names are the HF keys; keys a config does not model are kept in ``extra`` and written back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from mmspeech.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound="DecoderConfig")


@dataclasses.dataclass
class DecoderConfig:
    """Base of the text decoder configs: ``from_dict`` / ``to_dict`` / ``replace``."""

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
                value = getattr(self, f.name)
                data[f.name] = list(value) if isinstance(value, tuple) else value
        data["model_type"] = self.model_type
        return dict(sorted(data.items()))

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
