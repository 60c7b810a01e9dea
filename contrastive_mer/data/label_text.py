"""One rule for the text of a categorical label, used by the manifest reader and ``cmer init-manifest``: spaces
around it are stripped, runs of spaces inside it become one, and its case is folded unless case is kept.

>>> normalize_label("  Happy ")
'happy'
>>> normalize_label("Very  Happy", keep_case=True)
'Very Happy'
>>> case_variants(["happy", "Happy ", "sad"])
{'happy': ['Happy ', 'happy']}
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["case_variants", "normalize_label", "variants_warning"]


def normalize_label(value: object, *, keep_case: bool = False) -> str:
    """The label's text under the rule above (``keep_case``: no case folding)."""
    text = " ".join(str(value).split())
    return text if keep_case else text.casefold()


def case_variants(values: Iterable[object]) -> dict[str, list[str]]:
    """Labels that differ only in case or spaces: folded text -> the distinct raw spellings (sorted), for the
    folded texts written in two or more ways."""
    seen: dict[str, set[str]] = {}
    for value in values:
        seen.setdefault(normalize_label(value), set()).add(str(value))
    return {k: sorted(v) for k, v in sorted(seen.items()) if len(v) > 1}


def variants_warning(column: str, variants: dict[str, list[str]], *, keep_case: bool = False) -> str | None:
    """One warning line naming ``column``'s labels that differ only in case or spaces (None when there are
    none): merged into one class each, or (``keep_case``) kept apart as distinct classes."""
    if not variants:
        return None
    shown = "; ".join(" / ".join(repr(v) for v in spellings) for spellings in variants.values())
    what = ("case is kept, so those differing in case stay distinct classes" if keep_case
            else "each read as one class (spaces stripped, case folded)")
    return f"label {column!r}: values that differ only in case or spaces: {shown}; {what}"
