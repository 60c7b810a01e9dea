"""Dataset adapters. Importing this package imports every module in it, which registers every built-in adapter;
an adapter module that fails to import fails the import of the package (it never silently goes missing)."""

import importlib
import pkgutil

from contrastive_mer.data.datasets.base import (
    ADAPTERS,
    ClipRecord,
    CorpusAdapter,
    SampleError,
    SkipEntry,
    adapter_class,
    adapter_modalities,
    adapter_names,
    adapter_options,
    build_adapter,
    check_data,
    register_adapter,
)
from contrastive_mer.data.datasets.corpus import (
    AudioCorpusOptions,
    CorpusOptions,
    FolderCorpus,
    MediaCorpus,
    MediaCorpusOptions,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADAPTERS", "AudioCorpusOptions", "ClipRecord", "CorpusAdapter", "CorpusOptions", "FolderCorpus",
           "MediaCorpus", "MediaCorpusOptions", "SampleError", "SkipEntry", "adapter_class", "adapter_modalities",
           "adapter_names", "adapter_options", "build_adapter", "check_data", "register_adapter"]
