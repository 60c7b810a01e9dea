"""contrastive-mer: modality-pairwise contrastive learning for multimodal emotion recognition.

The public API, importable from the package root::

    from contrastive_mer import load_config, pretrain, extract_from_checkpoint, FeatureStore

Names are imported on first use (PEP 562), so ``import contrastive_mer`` stays light (no torch import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: module -> the public names it defines (configuration, training, extraction and the store, fusion and
#: evaluation, the MLLM front end, the demo)
_MODULES = {
    "contrastive_mer.config": ("ConfigError", "ExperimentConfig", "load_config", "model_from_checkpoint"),
    "contrastive_mer.errors": ("UserError",),
    "contrastive_mer.training": ("PretrainResult", "pretrain"),
    "contrastive_mer.module": ("PairwiseContrastiveModule", "load_module"),
    "contrastive_mer.extraction": ("ExtractOptions", "extract", "extract_from_checkpoint"),
    "contrastive_mer.encoding": ("encode_records",),
    "contrastive_mer.store.hdf5": ("FeatureStore",),
    "contrastive_mer.store.index": ("EmbeddingIndex", "index_from_store"),
    "contrastive_mer.fusion": ("FusionConfig", "fuse"),
    "contrastive_mer.evaluation.linear": ("LinearProbeConfig", "linear_probe"),
    "contrastive_mer.evaluation.knn": ("KnnProbeConfig", "knn_probe"),
    "contrastive_mer.evaluation.protocol": ("probe_stores",),
    "contrastive_mer.evaluation.retrieval": ("cross_modal_retrieval",),
    "contrastive_mer.frontend.config": ("FrontEndConfig",),
    "contrastive_mer.frontend.model": ("FrontEnd",),
    "contrastive_mer.demo": ("run_demo",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # static analysers see the real objects
    from contrastive_mer.config import ConfigError, ExperimentConfig, load_config, model_from_checkpoint
    from contrastive_mer.demo import run_demo
    from contrastive_mer.encoding import encode_records
    from contrastive_mer.errors import UserError
    from contrastive_mer.evaluation.knn import KnnProbeConfig, knn_probe
    from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
    from contrastive_mer.evaluation.protocol import probe_stores
    from contrastive_mer.evaluation.retrieval import cross_modal_retrieval
    from contrastive_mer.extraction import ExtractOptions, extract, extract_from_checkpoint
    from contrastive_mer.frontend.config import FrontEndConfig
    from contrastive_mer.frontend.model import FrontEnd
    from contrastive_mer.fusion import FusionConfig, fuse
    from contrastive_mer.module import PairwiseContrastiveModule, load_module
    from contrastive_mer.store.hdf5 import FeatureStore
    from contrastive_mer.store.index import EmbeddingIndex, index_from_store
    from contrastive_mer.training import PretrainResult, pretrain


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in this module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'contrastive_mer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
