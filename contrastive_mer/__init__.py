"""contrastive-mer: modality-pairwise contrastive learning for multimodal emotion recognition.

The public API, importable from the package root::

    from contrastive_mer import load_config, pretrain, extract_from_checkpoint, FeatureStore

Names are imported on first use (PEP 562), so ``import contrastive_mer`` stays light (no torch import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: module -> the public names it defines (configuration, the extension points and their registries, training,
#: extraction and the store, fusion and evaluation, the MLLM front end, the demo)
_MODULES = {
    "contrastive_mer.config": ("ConfigError", "ExperimentConfig"),
    "contrastive_mer.experiment": ("config_for_checkpoint", "config_from_dict", "load_config"),
    "contrastive_mer.errors": ("UserError",),
    "contrastive_mer.registry": ("Registry",),
    "contrastive_mer.encoders": ("ENCODERS", "EncoderOutput", "ModalityEncoder", "register_encoder"),
    "contrastive_mer.data.datasets": ("ADAPTERS", "CorpusAdapter", "MediaCorpus", "register_adapter"),
    "contrastive_mer.data.kinds": ("INPUT_KINDS", "InputKind"),
    "contrastive_mer.model.losses": ("LOSSES", "ContrastiveLoss"),
    "contrastive_mer.evaluation.probes": ("PROBES", "Probe"),
    "contrastive_mer.fusion": ("FUSION_MODES", "FusionConfig", "fuse"),
    "contrastive_mer.pretrain.loop": ("PretrainResult", "pretrain"),
    "contrastive_mer.model.module": ("PairwiseContrastiveModule", "load_module"),
    "contrastive_mer.extract.extraction": ("ExtractOptions", "extract", "extract_from_checkpoint"),
    "contrastive_mer.extract.encode": ("encode_records",),
    "contrastive_mer.store.hdf5": ("FeatureStore",),
    "contrastive_mer.store.index": ("EmbeddingIndex", "index_from_store"),
    "contrastive_mer.evaluation.linear": ("LinearProbeConfig", "linear_probe"),
    "contrastive_mer.evaluation.knn": ("KnnProbeConfig", "knn_probe"),
    "contrastive_mer.evaluation.protocol": ("probe_stores",),
    "contrastive_mer.evaluation.retrieval": ("cross_modal_retrieval",),
    "contrastive_mer.frontend.config": ("FrontEndConfig",),
    "contrastive_mer.frontend.front_end": ("FrontEnd",),
    "contrastive_mer.workflows.demo": ("run_demo",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # static analysers see the real objects (``X as X``: re-exported)
    from contrastive_mer.config import ConfigError as ConfigError
    from contrastive_mer.config import ExperimentConfig as ExperimentConfig
    from contrastive_mer.data.datasets import ADAPTERS as ADAPTERS
    from contrastive_mer.data.datasets import CorpusAdapter as CorpusAdapter
    from contrastive_mer.data.datasets import MediaCorpus as MediaCorpus
    from contrastive_mer.data.datasets import register_adapter as register_adapter
    from contrastive_mer.data.kinds import INPUT_KINDS as INPUT_KINDS
    from contrastive_mer.data.kinds import InputKind as InputKind
    from contrastive_mer.encoders import ENCODERS as ENCODERS
    from contrastive_mer.encoders import EncoderOutput as EncoderOutput
    from contrastive_mer.encoders import ModalityEncoder as ModalityEncoder
    from contrastive_mer.encoders import register_encoder as register_encoder
    from contrastive_mer.errors import UserError as UserError
    from contrastive_mer.evaluation.knn import KnnProbeConfig as KnnProbeConfig
    from contrastive_mer.evaluation.knn import knn_probe as knn_probe
    from contrastive_mer.evaluation.linear import LinearProbeConfig as LinearProbeConfig
    from contrastive_mer.evaluation.linear import linear_probe as linear_probe
    from contrastive_mer.evaluation.probes import PROBES as PROBES
    from contrastive_mer.evaluation.probes import Probe as Probe
    from contrastive_mer.evaluation.protocol import probe_stores as probe_stores
    from contrastive_mer.evaluation.retrieval import cross_modal_retrieval as cross_modal_retrieval
    from contrastive_mer.experiment import config_for_checkpoint as config_for_checkpoint
    from contrastive_mer.experiment import config_from_dict as config_from_dict
    from contrastive_mer.experiment import load_config as load_config
    from contrastive_mer.extract.encode import encode_records as encode_records
    from contrastive_mer.extract.extraction import ExtractOptions as ExtractOptions
    from contrastive_mer.extract.extraction import extract as extract
    from contrastive_mer.extract.extraction import extract_from_checkpoint as extract_from_checkpoint
    from contrastive_mer.frontend.config import FrontEndConfig as FrontEndConfig
    from contrastive_mer.frontend.front_end import FrontEnd as FrontEnd
    from contrastive_mer.fusion import FUSION_MODES as FUSION_MODES
    from contrastive_mer.fusion import FusionConfig as FusionConfig
    from contrastive_mer.fusion import fuse as fuse
    from contrastive_mer.model.losses import LOSSES as LOSSES
    from contrastive_mer.model.losses import ContrastiveLoss as ContrastiveLoss
    from contrastive_mer.model.module import PairwiseContrastiveModule as PairwiseContrastiveModule
    from contrastive_mer.model.module import load_module as load_module
    from contrastive_mer.pretrain.loop import PretrainResult as PretrainResult
    from contrastive_mer.pretrain.loop import pretrain as pretrain
    from contrastive_mer.registry import Registry as Registry
    from contrastive_mer.store.hdf5 import FeatureStore as FeatureStore
    from contrastive_mer.store.index import EmbeddingIndex as EmbeddingIndex
    from contrastive_mer.store.index import index_from_store as index_from_store
    from contrastive_mer.workflows.demo import run_demo as run_demo


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
