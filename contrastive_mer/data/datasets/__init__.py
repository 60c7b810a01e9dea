"""Dataset adapters. Importing this package registers every built-in adapter."""

import importlib

from contrastive_mer.data.datasets.base import (ClipRecord, CorpusAdapter, SampleError, adapter_modalities,
                                                adapter_names, build_adapter, register_adapter)

_BUILTIN = ("synthetic", "ravdess", "cremad", "meld", "mosei", "iemocap", "manifest")
for _name in _BUILTIN:
    try:
        importlib.import_module(f"contrastive_mer.data.datasets.{_name}")
    except ModuleNotFoundError as err:  # adapter module not written yet in this checkout
        if err.name != f"contrastive_mer.data.datasets.{_name}":
            raise

__all__ = ["ClipRecord", "CorpusAdapter", "SampleError", "adapter_modalities", "adapter_names", "build_adapter", "register_adapter"]
