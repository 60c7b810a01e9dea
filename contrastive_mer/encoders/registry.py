"""Encoders built by name from config.

Each entry names the encoder's config dataclass (so config keys and types are checked at start), the input kind
its preprocessor produces (``logmel``, ``frames``, ``tokens``, ``vector``), and the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from contrastive_mer.config import ConfigError, container_dict, one_line
from contrastive_mer.encoders.base import ModalityEncoder
from contrastive_mer.registry import Registry


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    config_cls: type
    input_kind: str
    build: Callable[[Any], ModalityEncoder]


#: every encoder by name (the built-ins register when ``contrastive_mer.encoders`` is imported)
ENCODERS: Registry[EncoderEntry] = Registry("encoder")


def register_encoder(name: str, config_cls: type, input_kind: str) -> Callable[[type], type]:
    """Class decorator registering an encoder class built as ``cls(config)``, with its config dataclass and the
    input kind its preprocessor produces."""

    def wrap(cls: type) -> type:
        ENCODERS.register(name, EncoderEntry(name, config_cls, input_kind, cls))
        return cls

    return wrap


def encoder_names() -> list[str]:
    return ENCODERS.names()


def get_entry(name: str) -> EncoderEntry:
    """The registered encoder ``name``; ValueError (:class:`~contrastive_mer.registry.UnknownName`) listing the
    known ones otherwise."""
    return ENCODERS.get(name)


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


def check_encoder(modality: Any, key: str) -> EncoderEntry:
    """``model.modalities.<m>`` (``key``): a known encoder whose ``encoder_args`` fit its config dataclass;
    returns its entry. ConfigError names the key."""
    try:
        entry = get_entry(modality.encoder)
        encoder_config(modality.encoder, container_dict(modality.encoder_args, f"{key}.encoder_args"))
    except (ValueError, OmegaConfBaseException) as err:
        raise ConfigError(f"{key}: {one_line(err)}") from None
    return entry
