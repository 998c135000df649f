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
        check_sizes(cls.model_type, kwargs)
        try:
            return cls(**kwargs, extra=extra)  # type: ignore[call-arg]
        except (TypeError, ValueError, ZeroDivisionError) as exc:
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


# Bounds on the sizes a config.json may declare, checked before anything is built: a file with
# hidden_size 1e9 or 1e6 layers is refused with the field named, instead of an allocator error
# (or minutes of building) — far above every published model (mms-1b-all: 1280 wide, 48 layers).
MAX_WIDTH = 1 << 20  # hidden/intermediate/embedding sizes, vocabularies, positions, channels
MAX_COUNT = 1024  # layers, heads, groups, flows
_COUNT_WORDS = ("layers", "heads", "groups", "n_layer", "n_head", "num_flows", "blocks")
_WIDTH_WORDS = ("size", "_dim", "dim_", "n_embd", "d_model", "channels", "embeddings",
                "positions", "n_ctx", "n_inner", "bins")  # fmt: skip


def check_sizes(model_type: str, values: dict[str, Any]) -> None:
    """Every count (layers, heads, groups) a positive integer <= MAX_COUNT (layers may be 0),
    every width a non-negative integer <= MAX_WIDTH.

    Raises:
        ConfigError: naming the field, what it holds and the bound.
    """
    for name, value in values.items():
        is_count = any(word in name for word in _COUNT_WORDS)
        if not is_count and not any(word in name for word in _WIDTH_WORDS):
            continue
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue  # flags, names, nested lists, unset sizes: the config class checks
            if isinstance(item, float) and item.is_integer() is False:
                continue  # a ratio whose name matched a word
            low = 0 if (not is_count or "layers" in name or name == "n_layer") else 1
            high = MAX_COUNT if is_count else MAX_WIDTH
            if not low <= item <= high:
                raise ConfigError(
                    f"{model_type} config: {name} is {item!r}; it must be between {low} and "
                    f"{high}. Is config.json damaged?"
                )


def _json_value(value: Any) -> Any:
    """Tuples (also nested) as lists, the way ``config.json`` spells them."""
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value
