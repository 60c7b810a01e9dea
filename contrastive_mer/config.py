"""The experiment schema (dataclasses checked by OmegaConf) and its loading: YAML plus dotlist overrides.

This module loads and merges; it imports no component. The checks that need a component (an encoder's
arguments, an input kind's settings, an adapter's options, a loss) live with that component and are run by
:func:`contrastive_mer.experiment.validate`, which :func:`contrastive_mer.experiment.load_config` calls. Here:
the schema, :func:`load_yaml`, and :func:`check_settings` for the sections no component owns (optimiser,
trainer, monitor, plain data numbers). Errors are one-line :class:`ConfigError` s naming the key.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, cast

from omegaconf import MISSING, Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from contrastive_mer.config_paths import data_root_from_env, resolve_input_paths
from contrastive_mer.errors import ConfigError


@dataclass
class HeadConfig:
    """``model.head``: the projection head (contrastive_mer.model.heads), Linear -> ReLU -> Linear."""

    hidden_dim: int = 1024
    output_dim: int = 512


@dataclass
class SpecAugmentConfig:
    """``model.modalities.<m>.augment`` for log-mel modalities (all zero: off; contrastive_mer.model.augment)."""

    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


@dataclass
class InputAugmentConfig:
    """``model.modalities.<m>.input_augment``: corruption of training inputs, made for vector inputs (functionals,
    action units, statistics; all zero: off; contrastive_mer.model.augment). ``corrupt``: the fraction of each
    clip's input values replaced by the same value of another clip of the batch (SCARF, Bahri et al. 2022);
    ``noise``: the standard deviation of Gaussian noise added to every value (in units of the standardised input
    when ``data.normalize`` is set)."""

    corrupt: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.corrupt < 1.0:
            raise ValueError(f"input_augment.corrupt must be in [0, 1), got {self.corrupt}")
        if not 0.0 <= self.noise < float("inf"):
            raise ValueError(f"input_augment.noise must be finite and >= 0, got {self.noise}")

    @property
    def active(self) -> bool:
        return self.corrupt > 0 or self.noise > 0


@dataclass
class ModalityConfig:
    """One modality: the encoder registered as ``encoder`` with ``encoder_args``; ``preprocess`` overrides the
    preprocessor settings derived from the encoder (e.g. sample rate, number of frames, image size)."""

    encoder: str = MISSING
    encoder_args: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    # the preprocessor kind when it is not the encoder's input kind (e.g. opensmile for a vector encoder)
    input: Optional[str] = None
    # the adapter input this modality reads (default: the modality's name), e.g. audio for an egemaps modality
    source: Optional[str] = None
    # SpecAugment-style masking of training batches (log-mel inputs only; contrastive_mer.model.augment)
    augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    # SCARF-style corruption and Gaussian noise on training inputs (vector inputs; contrastive_mer.model.augment)
    input_augment: InputAugmentConfig = field(default_factory=InputAugmentConfig)
    # dropout on this encoder's output before its head, in training only (None: model.feature_dropout)
    feature_dropout: Optional[float] = None


@dataclass
class TwoWindowConfig:
    """``data.two_window`` (contrastive_mer.data.windows): two random windows of ``frames`` frames per clip for the
    two-window loss (0: off); ``modality_frames``: modality -> its own window length (0: whole clip)."""

    frames: int = 0
    modality_frames: dict[str, int] = field(default_factory=dict)


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    eval_batch_size: Optional[int] = None  # validation batches (None: batch_size, so val and train losses compare)
    num_workers: int = 0
    val_fraction: float = 0.2
    split_group: str = "speaker"
    # the split_group values that validate (e.g. the official RAVDESS split's three actors,
    # contrastive_mer.data.splits.official_actor_split); None: a seeded val_fraction of the groups
    val_groups: Optional[list[str]] = None
    cache: str = "memory"
    cache_dir: Optional[str] = None
    max_skip_fraction: float = 0.05
    drop_last: bool = True
    batch_grouping: Optional[str] = None
    groups_per_batch: int = 1
    # label-free input standardisation per modality: speaker (any group name), utterance or none
    # (contrastive_mer.data.normalization); groups with fewer than normalize_min_clips clips fall back
    normalize: dict[str, str] = field(default_factory=dict)
    normalize_min_clips: int = 2
    two_window: TwoWindowConfig = field(default_factory=TwoWindowConfig)
    # a folder every file a manifest names must lie in, symbolic links followed ("manifest": the manifest's own
    # folder); None: a manifest is trusted like a config and may name any readable file (docs/reliability.md)
    confine_paths: Optional[str] = None


@dataclass
class ModelConfig:
    modalities: dict[str, ModalityConfig] = field(default_factory=dict)
    head: HeadConfig = field(default_factory=HeadConfig)
    # dropout on every encoder's output before its head, in training only (features are taken without it)
    feature_dropout: float = 0.0


@dataclass
class LossConfig:
    temperature: float = 0.07
    learnable_temperature: bool = False
    max_logit_scale: float = 100.0
    pairs: list[str] = field(default_factory=list)
    gather: bool = True
    local_loss: bool = True
    # pairwise_infonce (one window per clip, the default) or two_window_supcon (the official code's variant: needs
    # data.two_window; label: a categorical label whose classes are positives, count_offset: 1 is the official
    # denominator, anchor_rule: official never anchors the last modality; see losses.py)
    name: str = "pairwise_infonce"
    label: Optional[str] = None
    count_offset: float = 0.0
    anchor_rule: str = "all"
    # pairwise_infonce only: VICReg-style terms on each modality's projections (Bardes et al., ICLR 2022), added to
    # the pairwise loss: variance hinge (every dimension's std of sqrt(P)-scaled projections at least 1) and
    # off-diagonal covariance (squared, / P); 0 = off (see losses.variance_covariance)
    variance_weight: float = 0.0
    covariance_weight: float = 0.0


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "step"
    step_size: int = 1
    gamma: float = 0.9
    warmup_epochs: int = 0


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 5
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    early_stopping_patience: Optional[int] = None
    check_val_every_n_epoch: int = 1
    # Lightning's own meaning: a float in [0, 1] is a share of the batches, an int a number of batches
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    max_steps: int = -1  # -1: no limit (max_epochs decides)
    fast_dev_run: Any = False  # true or N: N batches of training and validation, no checkpoints or logs
    enable_progress_bar: bool = True
    deterministic: bool = False
    compile: bool = False
    sync_batchnorm: bool = False


@dataclass
class OnlineProbeConfig:
    """The online probe (contrastive_mer.pretrain.online_probe): every ``every_n_epochs`` validation epochs (0: off)
    a kNN and a linear probe of ``label`` (None: emotion, else the first label) on the frozen features of up to
    ``max_clips`` validation clips. ``weight_decays``: the linear probe's grid (None: the probe's default)."""

    every_n_epochs: int = 0
    max_clips: int = 1024
    label: Optional[str] = None
    weight_decays: Optional[list[float]] = None
    k: int = 20


@dataclass
class MonitorConfig:
    """What a run watches besides the loss. ``checkpoint``: the metric that chooses ``best-*.ckpt`` (None:
    ``val/loss``, or ``train/loss_epoch`` without validation); an ``online_probe/...`` metric uses labels to
    choose, so it is never the default. ``checkpoint_mode``: min or max (None: min for losses and MAE, else max)."""

    online_probe: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)
    checkpoint: Optional[str] = None
    checkpoint_mode: Optional[str] = None
    # the 2-D maps of validation embeddings (RUN/figures, TensorBoard): auto (UMAP when umap-learn, the viz
    # extra, is installed, else PCA), umap or pca
    embedding_map: str = "auto"


@dataclass
class DemoConfig:
    """Which synthetic speakers ``cmer demo`` probes (indices; pretraining sees ``data.options.speakers``).

    ``labelled_speakers``: whose labels train the probes (None: every pretraining speaker); as in practice,
    pretraining can use many more unlabelled speakers than there are labelled ones. ``test_speakers``: whom the
    probes are tested on (None: every speaker of the corpus that pretraining did not see).
    """

    labelled_speakers: Optional[list[int]] = None
    test_speakers: Optional[list[int]] = None


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("step", "cosine", "none")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")
CACHES = ("none", "memory", "disk", "disk+memory")


def one_line(err: Exception) -> str:
    """The first line of an error's message, with the config key OmegaConf names (when it names one)."""
    first = (str(err).splitlines() or [""])[0]
    key = getattr(err, "full_key", None)
    return f"{first} (key: {key})" if key and key not in first else first


def _load_mapping(file: Path) -> DictConfig:
    """One YAML file that must hold a mapping; a syntax error or another top-level type is a ConfigError."""
    import yaml

    try:
        loaded = OmegaConf.load(file)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{file}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{file}: expected a mapping (key: value) at the top level, got a list")
    return loaded


def load_yaml(path: str | Path | None = None, overrides: Sequence[str] = (), base: Any = None) -> DictConfig:
    """The YAML file at ``path`` (or nothing) merged over ``base`` (a schema or config, optional), then the
    ``key=value`` overrides (OmegaConf dotlist); not validated. Errors are one-line :class:`ConfigError` s
    naming the file and key. The one YAML + dotlist loader: experiment and front-end configs use it."""
    try:
        layers = [] if base is None else [base]
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise ConfigError(f"config file not found: {file}")
            layers.append(resolve_input_paths(_load_mapping(file), file))  # data.root: see config_paths
            env = data_root_from_env(layers)  # CMER_DATA_ROOT: above the file, below the overrides
            if env is not None:
                layers.append(env)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not key=value")
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers) if layers else OmegaConf.create({})
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path or 'config'}: {one_line(err)}") from None
    if not isinstance(merged, DictConfig):
        raise ConfigError(f"{path or 'config'}: expected a mapping at the top level")
    return merged


def refuse_interpolations(data: Any, where: str, key: str = "") -> None:
    """Raise :class:`ConfigError` if any string in ``data`` holds an OmegaConf interpolation (``${...}``).

    Configs saved in checkpoints and stores are resolved when written, so an interpolation there was put in by
    hand: resolving it would run resolvers such as ``oc.env`` on the reader's machine (copying a secret
    environment variable into every store extracted with the file)."""
    if isinstance(data, Mapping):
        for k, v in data.items():
            refuse_interpolations(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            refuse_interpolations(v, where, f"{key}[{i}]")
    elif isinstance(data, str) and "${" in data:
        raise ConfigError(f"{where}: {key or 'config'} holds an interpolation ({data[:60]!r}); saved configs "
                          "hold resolved values only")


def _choice(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def check_settings(cfg: DictConfig) -> None:
    """The sections no component owns (optimiser, trainer, monitor, plain data numbers): choices and ranges,
    refused before anything runs. ConfigError names the key."""
    _choice(cfg.optim.name, OPTIMIZERS, "optim.name")
    _choice(cfg.optim.scheduler, SCHEDULERS, "optim.scheduler")
    _choice(cfg.trainer.precision, PRECISIONS, "trainer.precision")
    _choice(cfg.data.cache, CACHES, "data.cache")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: {cfg.data.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.model.feature_dropout < 1.0:
        raise ConfigError(f"model.feature_dropout: {cfg.model.feature_dropout} must be in [0, 1)")
    for m, spec in cfg.model.modalities.items():
        if spec.feature_dropout is not None and not 0.0 <= spec.feature_dropout < 1.0:
            raise ConfigError(f"model.modalities.{m}.feature_dropout: {spec.feature_dropout} must be in [0, 1)")
    if cfg.data.normalize_min_clips < 1:
        raise ConfigError(f"data.normalize_min_clips: {cfg.data.normalize_min_clips} must be >= 1")
    try:
        resolved = container_dict(cfg, resolve=True)
    except OmegaConfBaseException as err:  # an interpolation that does not resolve
        raise ConfigError(f"config: {one_line(err)}") from None
    check_finite(resolved)
    _check_ranges(cfg)
    _check_confine(cfg.data.get("confine_paths"))
    _check_optim(cfg)


def _check_confine(value: Any) -> None:
    """``data.confine_paths``: None, ``manifest`` or a folder path (not checked for existence here: a saved
    config may travel to another machine; the adapter resolves it)."""
    if value is not None and (not isinstance(value, str) or not value.strip() or "\x00" in value):
        raise ConfigError(f"data.confine_paths: {value!r} must be a folder path or 'manifest'")


def check_finite(data: Any, key: str = "") -> None:
    """Every number in ``data`` (nested mappings and lists) is finite: YAML reads ``1e400`` as inf and ``.nan``
    as NaN, which would train nothing (``optim.lr=inf``) or size nothing sensibly. ConfigError names the key."""
    if isinstance(data, Mapping):
        for k, v in data.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            check_finite(v, f"{key}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{key or 'config'}: {data} is not a finite number")


def _check_optim(cfg: DictConfig) -> None:
    """The optimiser's numbers: a learning rate in (0, 10], decays and momenta in their ranges."""
    o = cfg.optim
    if not 0.0 < o.lr <= 10.0:
        raise ConfigError(f"optim.lr: {o.lr} must be in (0, 10]")
    if o.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay: {o.weight_decay} must be >= 0")
    if not 0.0 <= o.momentum < 1.0:
        raise ConfigError(f"optim.momentum: {o.momentum} must be in [0, 1)")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"optim.betas: {list(o.betas)} must be two numbers in [0, 1)")
    if not 0.0 < o.gamma <= 1.0:
        raise ConfigError(f"optim.gamma: {o.gamma} must be in (0, 1]")
    if o.step_size < 1 or o.warmup_epochs < 0:
        raise ConfigError(f"optim.step_size ({o.step_size}) must be >= 1 and optim.warmup_epochs "
                          f"({o.warmup_epochs}) >= 0")


def precheck(path: str | Path | None, overrides: Sequence[str] = (), *, settings: bool = True) -> DictConfig:
    """The checks that need no component (and so no torch): the YAML and overrides against the schema
    (misspelt keys, wrong types), non-finite numbers and, with ``settings``, the sections
    :func:`check_settings` owns (without: a partial file merged over a checkpoint's config later). The command
    line runs it before its slow imports, so a typo is reported in about a second; the full
    ``experiment.validate`` follows once the components are imported."""
    cfg = load_yaml(path, list(overrides), base=OmegaConf.structured(ExperimentConfig))
    if settings:
        check_settings(cfg)
        return cfg
    try:
        resolved = container_dict(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path or 'config'}: {one_line(err)}") from None
    check_finite(resolved)
    return cfg


def _check_ranges(cfg: DictConfig) -> None:
    """Numbers that make a run fail late or train nothing: refused before anything runs."""
    if not 0.0 <= cfg.data.max_skip_fraction <= 1.0:
        raise ConfigError(f"data.max_skip_fraction: {cfg.data.max_skip_fraction} must be in [0, 1]")
    positive = {"data.batch_size": cfg.data.batch_size, "trainer.accumulate_grad_batches":
                cfg.trainer.accumulate_grad_batches, "trainer.check_val_every_n_epoch":
                cfg.trainer.check_val_every_n_epoch, "trainer.log_every_n_steps": cfg.trainer.log_every_n_steps,
                "trainer.num_nodes": cfg.trainer.num_nodes, "model.head.output_dim": cfg.model.head.output_dim,
                "model.head.hidden_dim": cfg.model.head.hidden_dim}
    if cfg.data.eval_batch_size is not None:
        positive["data.eval_batch_size"] = cfg.data.eval_batch_size
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: {value} must be >= 1")
    if cfg.trainer.max_epochs < 1 and cfg.trainer.max_epochs != -1:
        raise ConfigError(f"trainer.max_epochs: {cfg.trainer.max_epochs} must be >= 1 (or -1: no limit)")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers: {cfg.data.num_workers} must be >= 0")
    _check_trainer_limits(cfg)


def _check_limit(key: str, value: Any) -> None:
    """Lightning's batch limits: None, an int >= 0 (batches) or a float in [0, 1] (share of the batches)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return
    raise ConfigError(f"{key}: {value!r} must be an int >= 0 (batches) or a float in [0, 1] (share of batches)")


def checkpoint_monitor(cfg: DictConfig, *, has_val: bool = True) -> tuple[str, str]:
    """``(metric, mode)`` that chooses ``best-*.ckpt`` (see :class:`MonitorConfig`)."""
    metric = cfg.monitor.checkpoint or ("val/loss" if has_val else "train/loss_epoch")
    mode = cfg.monitor.checkpoint_mode or ("min" if "loss" in metric or metric.endswith("mae") else "max")
    return metric, mode


def _check_trainer_limits(cfg: DictConfig) -> None:
    t, probe = cfg.trainer, cfg.monitor.online_probe
    for key in ("limit_train_batches", "limit_val_batches"):
        _check_limit(f"trainer.{key}", t[key])
    fdr = t.fast_dev_run
    if not (isinstance(fdr, bool) or (isinstance(fdr, int) and fdr >= 0)):
        raise ConfigError(f"trainer.fast_dev_run: {fdr!r} must be true, false or a number of batches >= 0")
    if t.max_steps < -1:
        raise ConfigError(f"trainer.max_steps: {t.max_steps} must be >= 1 (or -1: no limit)")
    if probe.every_n_epochs < 0 or probe.max_clips < 8 or probe.k < 1:
        raise ConfigError(f"monitor.online_probe: every_n_epochs ({probe.every_n_epochs}) must be >= 0 (0: off), "
                          f"max_clips ({probe.max_clips}) >= 8 and k ({probe.k}) >= 1")
    if probe.every_n_epochs and probe.every_n_epochs % t.check_val_every_n_epoch:
        raise ConfigError(f"monitor.online_probe.every_n_epochs: {probe.every_n_epochs} must be a multiple of "
                          f"trainer.check_val_every_n_epoch ({t.check_val_every_n_epoch}): it runs on "
                          "validation epochs")
    if probe.weight_decays is not None and (not probe.weight_decays or min(probe.weight_decays) < 0):
        raise ConfigError("monitor.online_probe.weight_decays: a non-empty list of values >= 0 (or null)")
    _choice(cfg.monitor.embedding_map, ("auto", "umap", "pca"), "monitor.embedding_map")
    if cfg.monitor.embedding_map == "umap" and getattr(importlib.util.find_spec("umap"), "origin", None) is None:
        raise ConfigError("monitor.embedding_map: umap needs umap-learn (pip install 'contrastive-mer[viz]')")
    if cfg.monitor.checkpoint_mode not in (None, "min", "max"):
        raise ConfigError(f"monitor.checkpoint_mode: {cfg.monitor.checkpoint_mode!r} is not one of min, max")
    metric = cfg.monitor.checkpoint or ""
    if metric.startswith("online_probe/") and not probe.every_n_epochs:
        raise ConfigError(f"monitor.checkpoint: {metric} needs the online probe "
                          "(monitor.online_probe.every_n_epochs=N)")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def container_dict(node: Any, where: str = "config", *, resolve: bool = False) -> dict[str, Any]:
    """``OmegaConf.to_container(node)`` as a plain dict (the keys of our config mappings are strings);
    :class:`ConfigError` naming ``where`` when ``node`` converts to something other than a mapping."""
    out = OmegaConf.to_container(node, resolve=resolve)
    if not isinstance(out, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(out).__name__}")
    return cast("dict[str, Any]", out)


def to_dict(cfg: Container) -> dict[str, Any]:
    """The resolved config as a plain dict (ConfigError if it is not a mapping)."""
    return container_dict(cfg, resolve=True)
