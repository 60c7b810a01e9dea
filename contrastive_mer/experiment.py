"""An experiment config loaded and checked by every component it names.

:func:`load_config` (YAML + ``key=value`` overrides over the schema of :mod:`contrastive_mer.config`),
:func:`config_from_dict` (a config saved in a checkpoint or a store) and :func:`config_for_checkpoint` (the
model from a checkpoint, the rest from a file) all end in :func:`validate`, which hands each section to the
component that owns it: encoders (``model.modalities.<m>.encoder[_args]``), input kinds (``.input``,
``.preprocess``, ``data.normalize``), augmentation (``.augment``), the adapter (``data.dataset``,
``data.options``), the loss (``loss.*``), the two temporal windows (``data.two_window``), and the schema's own
sections (optimiser, trainer, monitor). Every error is one :class:`~contrastive_mer.config.ConfigError` line
naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from contrastive_mer.config import ConfigError, ExperimentConfig, check_settings, load_yaml, one_line, to_dict
from contrastive_mer.config_paths import data_root_from_env
from contrastive_mer.data.datasets import check_data
from contrastive_mer.data.kinds import check_modality_input, check_normalize
from contrastive_mer.data.windows import check_two_window
from contrastive_mer.encoders import check_encoder
from contrastive_mer.model.augment import check_augment, check_input_augment
from contrastive_mer.model.losses import check_config as check_loss_config

__all__ = ["config_for_checkpoint", "config_from_dict", "load_config", "validate"]


def load_config(path: str | Path | None = None, overrides: Sequence[str] | None = None) -> DictConfig:
    """Load ``path`` (YAML) over the defaults, apply ``key=value`` overrides, validate, return the config."""
    cfg = load_yaml(path, list(overrides or ()), base=OmegaConf.structured(ExperimentConfig))
    validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> DictConfig:
    """Rebuild and validate a config from a plain dict (as stored in checkpoints and feature stores)."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(data))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    if not isinstance(cfg, DictConfig):  # merged over the schema's DictConfig: a mapping
        raise ConfigError("config: expected a mapping at the top level")
    validate(cfg)
    return cfg


def config_for_checkpoint(checkpoint_config: Mapping[str, Any], path: str | Path | None = None,
                          overrides: Sequence[str] = (), layers: Sequence[Mapping[str, Any]] = ()) -> DictConfig:
    """The config of a run with a trained model: the model section always comes from the checkpoint's config;
    everything else from the YAML at ``path`` over the defaults (default: the checkpoint's own settings), then
    ``layers`` (partial configs, merged in order), then ``key=value`` overrides. Setting ``model.*`` raises
    :class:`ConfigError`."""
    if any(o.startswith("model.") for o in overrides) or any("model" in layer for layer in layers):
        raise ConfigError("model.* cannot be overridden: the checkpoint defines the model")
    trained = to_dict(config_from_dict(dict(checkpoint_config)))
    if path is None:  # the checkpoint's own settings, with CMER_DATA_ROOT (config_paths) above them
        env = data_root_from_env([trained])
        base = trained if env is None else to_dict(OmegaConf.merge(OmegaConf.create(trained), env))
    else:  # validated below, once the model is the checkpoint's (the file may hold data settings only)
        base = {**to_dict(load_yaml(path, base=OmegaConf.structured(ExperimentConfig))), "model": trained["model"]}
    try:
        layered = OmegaConf.merge(OmegaConf.create(base), *(OmegaConf.create(dict(layer)) for layer in layers))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    return config_from_dict(to_dict(load_yaml(None, overrides, base=layered)))


def validate(cfg: DictConfig) -> None:
    """Hand every section to the component that owns it; raises ConfigError naming the first bad key."""
    modalities = list(cfg.model.modalities)
    if len(modalities) < 2:
        raise ConfigError(f"model.modalities: need at least two modalities for pairwise training, got {modalities}")
    kinds = {}
    for name, mod in cfg.model.modalities.items():
        key = f"model.modalities.{name}"
        check_encoder(mod, key)
        kinds[name] = check_modality_input(mod, key)
    check_loss_config(cfg.loss, modalities)
    check_data(cfg.data, {name: mod.source or name for name, mod in cfg.model.modalities.items()})
    check_settings(cfg)
    check_normalize(cfg.data.normalize, cfg.model.modalities)
    for name, mod in cfg.model.modalities.items():
        check_augment(mod.augment, kinds[name], f"model.modalities.{name}.augment")
        check_input_augment(mod.input_augment, kinds[name], f"model.modalities.{name}.input_augment")
    try:
        check_two_window(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
