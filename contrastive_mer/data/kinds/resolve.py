"""From a modality's config to its input kind, preprocessor settings and preprocessor; the config checks of
``model.modalities.<m>.input`` / ``.preprocess`` and of ``data.normalize``.

OmegaConf and the config module are imported where a config is read, not at import: the probes (which import
the one standardiser, hence this package) run where omegaconf is not installed (``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

from typing import Any, Mapping

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, standardisable_names
from contrastive_mer.data.transforms import Preprocessor


def kind_of(prep: Preprocessor) -> InputKind:
    """The registered kind of a preprocessor (its ``kind`` attribute)."""
    if not prep.kind:
        raise ValueError(f"{type(prep).__name__} names no input kind (set its kind attribute)")
    return INPUT_KINDS.get(prep.kind)


def _encoder_kind(mod: Any) -> str:
    from contrastive_mer.encoders import get_entry

    return get_entry(mod.encoder).input_kind


def input_kind(mod: Any, encoder_kind: str | None = None) -> str:
    """The preprocessor kind of a modality: ``mod.input`` when set (it must produce the encoder's input kind),
    else the encoder's input kind. ConfigError (``input: ...``) names a bad or incompatible kind."""
    from contrastive_mer.config import ConfigError

    encoder_kind = encoder_kind or _encoder_kind(mod)
    name = getattr(mod, "input", None) or encoder_kind
    if name not in INPUT_KINDS:
        raise ConfigError(f"input: unknown preprocessor kind {name!r}; known: {', '.join(INPUT_KINDS.names())}")
    produces = INPUT_KINDS.get(name).encoder_kind
    if produces != encoder_kind:
        raise ConfigError(f"input: {name!r} produces {produces} inputs but the encoder {mod.encoder!r} takes "
                          f"{encoder_kind}")
    return name


def preprocess_config(mod: Any, kind: str) -> Any:
    """The typed preprocessor config of a modality: the kind's defaults, then values implied by the encoder's
    arguments (the kind's ``derived``), then the modality's explicit ``preprocess`` overrides."""
    from omegaconf import DictConfig, OmegaConf

    from contrastive_mer.config import container_dict
    from contrastive_mer.encoders import encoder_config

    entry = INPUT_KINDS.get(kind)
    enc = encoder_config(mod.encoder, container_dict(mod.encoder_args, "encoder_args")
                         if isinstance(mod.encoder_args, DictConfig) else mod.encoder_args)
    derived = {dst: getattr(enc, src) for src, dst in entry.derived.items()}
    explicit = OmegaConf.to_container(mod.preprocess) if isinstance(mod.preprocess, DictConfig) else mod.preprocess
    merged = OmegaConf.merge(OmegaConf.structured(entry.config_cls), derived, explicit or {})
    return OmegaConf.to_object(merged)


def build_preprocessor(mod: Any, name: str) -> Preprocessor:
    """The preprocessor of modality ``name``, reading the adapter input ``mod.source`` (default: ``name``)."""
    kind = input_kind(mod)
    return INPUT_KINDS.get(kind).build(preprocess_config(mod, kind), getattr(mod, "source", None) or name)


def check_modality_input(mod: Any, key: str) -> str:
    """Check ``<key>.input`` and ``<key>.preprocess`` (``key``: ``model.modalities.<m>``); returns the kind."""
    from omegaconf.errors import OmegaConfBaseException

    from contrastive_mer.config import ConfigError, one_line

    try:
        kind = input_kind(mod)
    except ConfigError as err:
        raise ConfigError(f"{key}.{err}") from None
    try:
        preprocess_config(mod, kind)
    except (ValueError, OmegaConfBaseException) as err:  # ValueError: a preprocessor config's own checks
        raise ConfigError(f"{key}.preprocess: {one_line(err)}") from None
    return kind


def check_normalize(normalize: Mapping[str, Any], modalities: Mapping[str, Any]) -> None:
    """Check ``data.normalize``: a known modality whose kind is standardisable, and a mode string."""
    from contrastive_mer.config import ConfigError

    for name, mode in normalize.items():
        if name not in modalities:
            raise ConfigError(f"data.normalize.{name}: no such modality; the model has {', '.join(modalities)}")
        kind = input_kind(modalities[name])
        if not INPUT_KINDS.get(kind).standardisable:
            raise ConfigError(f"data.normalize.{name}: {kind} inputs cannot be standardised (only "
                              f"{', '.join(standardisable_names())} inputs can)")
        if not isinstance(mode, str) or not mode:
            raise ConfigError(f"data.normalize.{name}: expected speaker (a group name), utterance or none")
