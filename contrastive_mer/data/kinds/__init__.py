"""Input kinds: what one kind of preprocessed input is, in one module per kind (:class:`InputKind`).

Importing this package imports every module in it, which registers the built-in kinds (``logmel``, ``frames``,
``tokens``, ``vector``, ``opensmile``, ``logmel_stats``, ``waveform``, ``hf_audio_cached``) in
:data:`INPUT_KINDS`; a new kind is a module that
registers an :class:`InputKind` instance (docs/architecture.md, "Adding an input kind").
"""

import importlib
import pkgutil

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, standardisable_names
from contrastive_mer.data.kinds.frames import Frames, FramesConfig
from contrastive_mer.data.kinds.logmel import LogMel, LogMelConfig
from contrastive_mer.data.kinds.logmel_stats import LogMelStats, LogMelStatsConfig
from contrastive_mer.data.kinds.opensmile import OpenSmile, OpenSmileConfig
from contrastive_mer.data.kinds.resolve import (
    build_preprocessor,
    check_modality_input,
    check_normalize,
    input_kind,
    kind_of,
    preprocess_config,
)
from contrastive_mer.data.kinds.tokens import Tokens, TokensConfig
from contrastive_mer.data.kinds.vector import Vector, VectorConfig

__all__ = ["INPUT_KINDS", "Frames", "FramesConfig", "InputKind", "LogMel", "LogMelConfig", "LogMelStats",
           "LogMelStatsConfig", "OpenSmile", "OpenSmileConfig", "Tokens", "TokensConfig", "Vector", "VectorConfig",
           "build_preprocessor", "check_modality_input", "check_normalize", "input_kind", "kind_of",
           "preprocess_config", "standardisable_names"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
