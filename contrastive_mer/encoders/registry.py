"""Encoders built by name from config.

Each entry names the encoder's config dataclass (so config keys and types are checked at start), the input kind
its preprocessor produces (``logmel``, ``frames``, ``tokens``, ``vector``), and the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import OmegaConf

from contrastive_mer.encoders.base import ModalityEncoder


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    config_cls: type
    input_kind: str
    build: Callable[[Any], ModalityEncoder]


_ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(name: str, config_cls: type, input_kind: str) -> Callable:
    """Class decorator registering an encoder class built as ``cls(config)``."""

    def wrap(cls: type) -> type:
        _ENCODERS[name] = EncoderEntry(name, config_cls, input_kind, cls)
        return cls

    return wrap


def encoder_names() -> list[str]:
    import contrastive_mer.encoders  # noqa: F401  (registers built-ins)

    return sorted(_ENCODERS)


def get_entry(name: str) -> EncoderEntry:
    names = encoder_names()
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(names)}")
    return _ENCODERS[name]


def encoder_config(name: str, args: dict[str, Any] | None) -> Any:
    """Check ``args`` against the encoder's config dataclass and return the typed config object.

    Raises ValueError naming an unknown key or a wrongly typed value.
    """
    entry = get_entry(name)
    schema = OmegaConf.structured(entry.config_cls)
    merged = OmegaConf.merge(schema, OmegaConf.create(dict(args or {})))
    return OmegaConf.to_object(merged)


def build_encoder(name: str, args: dict[str, Any] | None) -> ModalityEncoder:
    """Build the encoder registered as ``name`` from its argument dict."""
    return get_entry(name).build(encoder_config(name, args))
