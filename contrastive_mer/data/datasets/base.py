"""The contract every corpus adapter fulfils, and the adapter registry.

An adapter lists its clips cheaply (:meth:`CorpusAdapter.records`, no decoding) and decodes one clip on
demand (:meth:`CorpusAdapter.load`). Decoding problems raise :class:`SampleError`, which names the sample
and the file; the dataset wrapper turns them into skip-report entries instead of crashing the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from contrastive_mer.data.sample import LabelValue, Sample


class SampleError(Exception):
    """A clip that cannot be used. Carries the sample id, the offending file (if any) and a reason."""

    def __init__(self, sample_id: str, reason: str, path: str | None = None):
        self.sample_id = sample_id
        self.reason = reason
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"sample {sample_id!r}{where}: {reason}")


@dataclass
class ClipRecord:
    """What an adapter knows about a clip before decoding it.

    ``sources`` maps modality name -> a file path (str), an inline value (text ``str``, numpy vector), or
    anything the adapter's :meth:`CorpusAdapter.load` understands.
    """

    id: str
    sources: dict[str, Any]
    labels: dict[str, LabelValue] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)


class CorpusAdapter(ABC):
    """Base class of dataset adapters.

    Subclasses set :attr:`name`, fill :attr:`label_names` (categorical label name -> class names, index =
    label code) and implement :meth:`records` and :meth:`load`.
    """

    name: str = "base"
    #: modality names this adapter can provide
    modalities: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.label_names: dict[str, list[str]] = {}

    @abstractmethod
    def records(self) -> list[ClipRecord]:
        """All clips of the corpus (cheap: no media is decoded)."""

    @abstractmethod
    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Decode ``record`` into a :class:`Sample` holding only ``modalities`` (those it has).

        Raises :class:`SampleError` naming the clip and file when something cannot be decoded.
        """


AdapterFactory = Callable[..., CorpusAdapter]
_ADAPTERS: dict[str, AdapterFactory] = {}


def register_adapter(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Class decorator: make an adapter buildable by ``name`` from config (``data.dataset``)."""

    def wrap(factory: AdapterFactory) -> AdapterFactory:
        _ADAPTERS[name] = factory
        return factory

    return wrap


def adapter_names() -> list[str]:
    """Names of all registered adapters (imports the built-in ones first)."""
    import contrastive_mer.data.datasets  # noqa: F401  (registers built-ins)

    return sorted(_ADAPTERS)


def adapter_modalities(name: str) -> tuple[str, ...]:
    """The modalities an adapter class declares (empty when they depend on its options, e.g. manifests)."""
    adapter_names()
    return tuple(getattr(_ADAPTERS.get(name), "modalities", ()) or ())


def build_adapter(name: str, **kwargs: Any) -> CorpusAdapter:
    """Build the adapter registered as ``name`` with keyword arguments from config."""
    names = adapter_names()
    if name not in _ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(names)}")
    return _ADAPTERS[name](**kwargs)
