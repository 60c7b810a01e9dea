"""The one registry pattern: a named table of extension points (encoders, adapters, input kinds, losses, probes,
fusion modes).

A component registers itself where it is defined, by decorator or call::

    ENCODERS = Registry("encoder")              # in the package that owns the extension point

    @ENCODERS.register("mlp")                   # in the module that defines the component
    class MLPEncoder: ...

The package that owns a registry imports its built-in components in its ``__init__``, so importing the package
fills the table and no registry ever imports the package back (no import cycle). A lookup of an unknown name raises
:class:`UnknownName` (a ``KeyError`` and a ``ValueError``) listing the known names.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar, overload

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no component registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> entry (a class, a function or a small record). ``kind`` names the extension point in messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Register ``entry`` as ``name`` (returns it), or return a decorator that registers what it decorates.
        A second registration of a name replaces the first (a user's component may override a built-in)."""
        if entry is not None:
            self._entries[name] = entry
            return entry

        def wrap(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return wrap

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (e.g. a component registered for a test); UnknownName if absent."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``; :class:`UnknownName` naming the known ones otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
