"""The contract every corpus adapter fulfils, its typed options, scan-time skips and the adapter registry.

An adapter lists its clips cheaply (:meth:`CorpusAdapter.records`: one lazy scan, no decoding, cached) and
decodes one clip on demand (:meth:`CorpusAdapter.load`). Decoding problems raise :class:`SampleError`, which
names the sample and the file; the dataset wrapper turns them into skip-report entries instead of crashing the
run. What the scan finds wrong is a :class:`SkipEntry`: in :attr:`CorpusAdapter.skipped` when the entry yields
no record, or attached to a record that stays listed (its ``load`` raises, so the skip report names it).

Every adapter declares a dataclass of its options (:attr:`CorpusAdapter.options_cls`); ``config.validate``
checks ``data.options`` against it (:func:`adapter_options`), so a misspelt or wrongly typed option is a
one-line error naming the option and the dataset before anything runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

from contrastive_mer.data.sample import LabelValue, Sample
from contrastive_mer.registry import Registry

#: the scan-time skip reason of a clip holding none of ``data.options.modalities`` (not a decoding failure)
NO_CHOSEN_MODALITY = "no chosen modality"

#: option names that were renamed (the error for an old name says the new one)
RENAMED_OPTIONS = {"actors": "speakers", "sessions": "speakers", "size": "frame_size", "image_size": "frame_size"}


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


@dataclass(frozen=True)
class SkipEntry:
    """Something the scan found wrong: the file it is in, why, and (when known) the table line and the clip id."""

    file: str
    reason: str
    line: int | None = None
    id: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.id}: {self.reason}" if self.id else f"{where}: {self.reason}"


def check_option_names(adapter: str, options_cls: type, names: Sequence[str]) -> None:
    """Raise ValueError naming the first of ``names`` that ``options_cls`` does not have (and its new name)."""
    known = [f.name for f in dataclasses.fields(options_cls)]
    for name in names:
        if name not in known:
            hint = f" (renamed to {RENAMED_OPTIONS[name]!r})" if RENAMED_OPTIONS.get(name) in known else ""
            raise ValueError(f"dataset {adapter!r} has no option {name!r}{hint}; known: {', '.join(known)}")


class CorpusAdapter(ABC):
    """Base class of dataset adapters.

    Subclasses set :attr:`name`, :attr:`options_cls` (a dataclass; its instance is :attr:`options`), fill
    :attr:`label_names` (categorical label name -> class names, index = label code) and implement
    :meth:`_scan` and :meth:`load`. Build one from an options object, a mapping, or keyword options.

    A subclass without :attr:`options_cls` takes its options as plain constructor arguments (:attr:`options`
    is None); :func:`register_adapter` then derives the options dataclass from its ``__init__`` signature.
    It may override :meth:`records` instead of implementing :meth:`_scan`.
    """

    name: str = "base"
    #: modality names this adapter can provide (empty when they depend on its options, e.g. manifests)
    modalities: tuple[str, ...] = ()
    #: the dataclass of this adapter's options
    options_cls: ClassVar[type | None] = None

    def __init__(self, options: Any = None, **fields: Any) -> None:
        if options is not None and fields:
            raise ValueError(f"dataset {self.name!r}: pass either an options object or keyword options, not both")
        if isinstance(options, Mapping):
            fields, options = dict(options), None
        if self.options_cls is None:
            if options is not None or fields:
                raise TypeError(f"dataset {self.name!r} has no options_cls; it takes no options here")
        elif options is None:
            check_option_names(self.name, self.options_cls, list(fields))
            options = self.options_cls(**fields)
        elif not isinstance(options, self.options_cls):
            raise TypeError(f"dataset {self.name!r}: expected {self.options_cls.__name__}, got "
                            f"{type(options).__name__}")
        self.options = options
        self.label_names: dict[str, list[str]] = {}
        #: entries the scan left out (they yield no record)
        self.skipped: list[SkipEntry] = []
        self._invalid: dict[str, SkipEntry] = {}
        self._records: list[ClipRecord] | None = None

    def records(self) -> list[ClipRecord]:
        """All clips of the corpus (cheap: no media is decoded). The folder is scanned once, on first call."""
        if self._records is None:
            self.skipped, self._invalid = [], {}
            self._records = self._without_chosen_modality(self._scan())
        return list(self._records)

    def _without_chosen_modality(self, records: list[ClipRecord]) -> list[ClipRecord]:
        """With ``data.options.modalities`` set, a record left with no source holds none of them: it is left
        out and listed once as a scan skip (:data:`NO_CHOSEN_MODALITY`), never counted as a decoding failure."""
        chosen = getattr(self.options, "modalities", None)
        if not chosen:
            return records
        where = str(getattr(self, "path", None) or getattr(self, "root", None) or self.name)
        # a record already marked invalid (unknown label code, ...) stays: loading it reports that reason
        empty = [r for r in records if not r.sources and r.id not in self._invalid]
        for r in empty:
            self.skip(where, f"{NO_CHOSEN_MODALITY} (data.options.modalities: {', '.join(chosen)})", id=r.id)
        dropped = {r.id for r in empty}
        return [r for r in records if r.id not in dropped]

    def _scan(self) -> list[ClipRecord]:
        """List the corpus; report problems with :meth:`skip` (no record) or :meth:`mark_invalid` (kept)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _scan nor records")

    def skip(self, file: Any, reason: str, line: int | None = None, id: str | None = None) -> None:
        """Record an entry the scan leaves out."""
        self.skipped.append(SkipEntry(str(file), reason, line, id))

    def mark_invalid(self, record_id: str, file: Any, reason: str, line: int | None = None) -> None:
        """Keep ``record_id`` listed but make its :meth:`load` raise (the skip report then names it)."""
        self._invalid[record_id] = SkipEntry(str(file) if file else "", reason, line, record_id)

    def check_valid(self, record: ClipRecord) -> None:
        """Raise :class:`SampleError` for a record the scan found malformed."""
        entry = self._invalid.get(record.id)
        if entry is not None:
            raise SampleError(record.id, entry.reason, entry.file or None)

    @abstractmethod
    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Decode ``record`` into a :class:`Sample` holding only ``modalities`` (those it has).

        Raises :class:`SampleError` naming the clip and file when something cannot be decoded.
        """


#: every adapter class by name (the built-ins register when ``contrastive_mer.data.datasets`` is imported)
ADAPTERS: Registry[type[CorpusAdapter]] = Registry("dataset")
_OPTIONS: dict[str, type] = {}


def options_from_signature(cls: type[CorpusAdapter]) -> type:
    """A dataclass of the keyword arguments of ``cls.__init__`` (annotation, default), for adapters without
    :attr:`CorpusAdapter.options_cls`; an unannotated argument is typed ``Any``."""
    hints = typing.get_type_hints(cls.__init__)
    fields = []
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = dataclasses.field() if param.default is param.empty else dataclasses.field(default=param.default)
        fields.append((param.name, hints.get(param.name, Any), default))
    return dataclasses.make_dataclass(f"{cls.__name__}Options", fields, kw_only=True)


def register_adapter(name: str) -> Callable[[type[CorpusAdapter]], type[CorpusAdapter]]:
    """Class decorator: make an adapter buildable by ``name`` from config (``data.dataset``), with the options
    dataclass it declares (:attr:`CorpusAdapter.options_cls`) or one derived from its ``__init__``."""

    def wrap(cls: type[CorpusAdapter]) -> type[CorpusAdapter]:
        declared: type | None = getattr(cls, "options_cls", None)
        if declared is not None and not dataclasses.is_dataclass(declared):
            raise TypeError(f"adapter {name!r} ({cls.__name__}): options_cls must be a dataclass")
        ADAPTERS.register(name, cls)
        _OPTIONS[name] = declared or options_from_signature(cls)
        return cls

    return wrap


def adapter_names() -> list[str]:
    """Names of all registered adapters."""
    return ADAPTERS.names()


def adapter_class(name: str) -> type[CorpusAdapter]:
    """The adapter class registered as ``name``; ValueError listing the known names otherwise."""
    return ADAPTERS.get(name)


def adapter_modalities(name: str) -> tuple[str, ...]:
    """The modalities an adapter class declares (empty when they depend on its options, e.g. manifests)."""
    return tuple(getattr(ADAPTERS.get(name), "modalities", ()) or ()) if name in ADAPTERS else ()


def _typed_options(cls: type, values: Mapping[str, Any]) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(dict(values))))


def adapter_options(name: str, values: Mapping[str, Any]) -> Any:
    """Check ``values`` (e.g. ``data.options``) against the options dataclass of adapter ``name``.

    Returns the typed options object. Raises a one-line ValueError naming the dataset and the unknown, wrongly
    typed or invalid option.
    """
    from omegaconf.errors import OmegaConfBaseException

    adapter_class(name)
    cls = _OPTIONS[name]
    check_option_names(name, cls, list(values))
    try:
        return _typed_options(cls, values)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        key = getattr(err, "full_key", None)
        if not key:  # find the option that fails on its own (None: only a combination fails)
            key = next((k for k in values if _fails(cls, {k: values[k]})), None)
        where = f"dataset {name!r} option {key!r}" if key else f"dataset {name!r}"
        raise ValueError(f"{where}: {str(err).splitlines()[0]}") from None


def _fails(cls: type, values: Mapping[str, Any]) -> bool:
    from omegaconf.errors import OmegaConfBaseException

    try:
        _typed_options(cls, values)
    except (OmegaConfBaseException, ValueError, TypeError):
        return True
    return False


def build_adapter(name: str, **kwargs: Any) -> CorpusAdapter:
    """Build the adapter registered as ``name`` with keyword options (see its ``options_cls``)."""
    return adapter_class(name)(**kwargs)


def add_data_settings(data: Any, options: dict[str, Any]) -> None:
    """Copy the ``data`` settings an adapter reads as an option (``data.confine_paths``) into its ``options``;
    ValueError naming the key when the adapter has no such option."""
    value = data.get("confine_paths") if hasattr(data, "get") else None
    if value is None:
        return
    known = {f.name for f in dataclasses.fields(_OPTIONS[data.dataset])} if data.dataset in _OPTIONS else set()
    if "confine_paths" not in known:
        raise ValueError(f"data.confine_paths: dataset {data.dataset!r} reads no paths from a table "
                         "(only a manifest does)")
    options["confine_paths"] = value


def check_data(data: Any, sources: Mapping[str, str]) -> None:
    """``data.dataset`` and ``data.options`` (with ``data.root``): a known adapter whose typed options accept
    them, offering every modality's source (``sources``: modality -> the adapter input it reads).
    ConfigError names the key."""
    from contrastive_mer.config import ConfigError, container_dict

    if data.dataset not in ADAPTERS:
        raise ConfigError(f"data.dataset: unknown dataset {data.dataset!r}; known: {', '.join(adapter_names())}")
    options = container_dict(data.options, "data.options", resolve=True) if data.options else {}
    if data.root is not None:
        options["root"] = data.root
    try:
        add_data_settings(data, options)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:  # typed like encoder_args: a misspelt or wrongly typed option is named here, before anything runs
        adapter_options(data.dataset, options)
    except ValueError as err:
        raise ConfigError(f"data.options: {err}") from None
    offered = adapter_modalities(data.dataset)
    for name, source in sources.items():
        if offered and source not in offered:
            what = f"source {source!r} of modality {name!r}" if source != name else f"modality {name!r}"
            raise ConfigError(f"model.modalities.{name}: unknown {what} for dataset "
                              f"{data.dataset!r}; it provides {', '.join(offered)}")
