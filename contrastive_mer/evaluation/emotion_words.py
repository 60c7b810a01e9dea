"""Emotion words in free text: a lexicon of synonym groups (shipped as ``emotion_lexicon.json``, replaceable by a
user file) and the extractor that finds the emotions an answer asserts, with negation (``"not happy"``).

Rules (the same for every answer):

* Text is lower-cased and split into words (apostrophes kept: ``isn't``) and the punctuation ``. , ; : ! ?``.
* At each position the longest lexicon phrase wins (``"no emotion"`` is the neutral group, not a negation);
  then multi-word negation cues and clause breaks; then single words. A word ending in ``n't`` is a cue.
* A negation cue negates every emotion word within the next ``negation_window`` units (a phrase is one unit)
  until a clause break (``but``, punctuation, ...): ``"neither happy nor sad"`` negates both,
  ``"not happy, but relieved"`` negates only happy.
* An answer's emotions are the groups of its non-negated words in order of first mention (several per answer);
  the negated groups are kept apart (sentiment uses them: ``"not happy"`` reads as negative).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

from contrastive_mer.errors import UserError

SENTIMENTS = ("positive", "negative", "neutral")
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:!?]")


class LexiconError(UserError):
    """A lexicon or synonym-map file that cannot be used; the message names the file and the key."""


def words(text: str) -> list[str]:
    """Lower-cased words and clause punctuation of ``text`` (curly apostrophes straightened)."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(words(text))


@dataclass
class Lexicon:
    """Synonym groups: phrase (as a word tuple) -> group name, the sentiment of each group, negation cues,
    clause breaks and the negation window."""

    phrases: dict[tuple[str, ...], str]
    sentiment: dict[str, str]
    negations: set[tuple[str, ...]] = field(default_factory=set)
    breaks: set[tuple[str, ...]] = field(default_factory=set)
    window: int = 3
    source: str = "<built-in>"

    @property
    def groups(self) -> list[str]:
        return sorted(set(self.phrases.values()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "Lexicon":
        """Build from the JSON layout of ``emotion_lexicon.json``; a bad entry is a :class:`LexiconError`."""
        emotions = data.get("emotions")
        if not isinstance(emotions, Mapping) or not emotions:
            raise LexiconError(f"{source}: 'emotions' must map group names to {{sentiment, words}}")
        phrases: dict[tuple[str, ...], str] = {}
        sentiment: dict[str, str] = {}
        for group, entry in emotions.items():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("words"), list):
                raise LexiconError(f"{source}: emotions.{group} needs a 'words' list")
            polarity = entry.get("sentiment", "neutral")
            if polarity not in SENTIMENTS:
                raise LexiconError(f"{source}: emotions.{group}.sentiment is {polarity!r}; expected one of "
                                   f"{', '.join(SENTIMENTS)}")
            sentiment[group] = polarity
            for word in [group, *entry["words"]]:
                key = _phrase(str(word))
                if not key:
                    raise LexiconError(f"{source}: emotions.{group}: {word!r} has no word in it")
                if phrases.get(key, group) != group:
                    raise LexiconError(f"{source}: {word!r} is in both {phrases[key]!r} and {group!r}")
                phrases[key] = group
        window = data.get("negation_window", 3)
        if not isinstance(window, int) or window < 1:
            raise LexiconError(f"{source}: negation_window must be a positive integer, got {window!r}")
        negations = {_phrase(str(w)) for w in data.get("negations", [])} - {()}
        breaks = {_phrase(str(w)) for w in data.get("clause_breaks", [])} - {()}
        return cls(phrases, sentiment, negations, breaks, window, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Lexicon":
        """The shipped lexicon (``path=None``) or a user's JSON/YAML file in the same layout."""
        if path is None:
            resource = files("contrastive_mer.evaluation") / "emotion_lexicon.json"
            return cls.from_dict(json.loads(resource.read_text(encoding="utf-8")), "<built-in lexicon>")
        return cls.from_dict(_read_mapping(path), str(path))

    def group_of(self, text: str) -> str | None:
        """The group a word or phrase belongs to, or None."""
        return self.phrases.get(_phrase(text))

    def with_groups(self, groups: Mapping[str, str]) -> "Lexicon":
        """A copy whose phrases also include ``groups`` (word -> group; these win over the lexicon's own)."""
        phrases = dict(self.phrases)
        for word, group in groups.items():
            key = _phrase(word)
            if key:
                phrases[key] = group
        return Lexicon(phrases, dict(self.sentiment), set(self.negations), set(self.breaks), self.window,
                       self.source)


@dataclass
class Extraction:
    """What one answer says: asserted ``emotions`` (groups, first mention first), ``negated`` groups, and the
    surface ``words`` matched for each asserted group."""

    emotions: list[str]
    negated: list[str]
    words: list[str]


def extract(text: str, lexicon: Lexicon) -> Extraction:
    """The emotions ``text`` asserts and the ones it negates (rules in the module docstring)."""
    toks = words(text)
    longest = max(len(k) for k in [*lexicon.phrases, *lexicon.negations, *lexicon.breaks])
    emotions: list[str] = []
    surface: list[str] = []
    negated: list[str] = []
    scope = 0  # units left in the current negation scope
    i = 0
    while i < len(toks):
        kind, n, group = _match(toks, i, lexicon, longest)
        if kind == "emotion":
            assert group is not None
            if scope > 0:
                if group not in negated:
                    negated.append(group)
            elif group not in emotions:
                emotions.append(group)
                surface.append(" ".join(toks[i:i + n]))
            scope = max(scope - 1, 0)
        elif kind == "negation":
            scope = lexicon.window
        elif kind == "break":
            scope = 0
        else:
            scope = max(scope - 1, 0)
        i += n
    negated = [g for g in negated if g not in emotions]
    return Extraction(emotions, negated, surface)


def _match(toks: list[str], i: int, lexicon: Lexicon, longest: int) -> tuple[str, int, str | None]:
    for n in range(min(longest, len(toks) - i), 0, -1):
        key = tuple(toks[i:i + n])
        if key in lexicon.phrases:
            return "emotion", n, lexicon.phrases[key]
        if key in lexicon.negations:
            return "negation", n, None
        if key in lexicon.breaks:
            return "break", n, None
    if toks[i].endswith("n't"):
        return "negation", 1, None
    return "word", 1, None


def polarity(extraction: Extraction, lexicon: Lexicon) -> str:
    """``positive``, ``negative`` or ``neutral``: asserted groups count their sentiment (+1 / -1); a negated
    positive group counts -1 (``"not happy"``), a negated negative group 0 (``"not sad"`` is not joy)."""
    score = sum({"positive": 1, "negative": -1}.get(lexicon.sentiment.get(g, "neutral"), 0)
                for g in extraction.emotions)
    score -= sum(1 for g in extraction.negated if lexicon.sentiment.get(g) == "positive")
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def read_synonym_map(path: str | Path) -> dict[str, str]:
    """A user synonym / emotion-wheel map as word -> group. The file (JSON or YAML) maps either each group to
    its words (``{"joy": ["happy", "glad"]}``) or each word to its group (``{"glad": "joy"}``)."""
    data = _read_mapping(path)
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, list):
            out[str(key)] = str(key)
            for word in value:
                if not isinstance(word, str):
                    raise LexiconError(f"{path}: group {key!r} lists a non-string {word!r}")
                out[word] = str(key)
        else:
            raise LexiconError(f"{path}: {key!r} must map to a group name or a list of words, got "
                               f"{type(value).__name__}")
    if not out:
        raise LexiconError(f"{path}: the synonym map is empty")
    return out


def _read_mapping(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LexiconError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # json / yaml raise their own error types
        raise LexiconError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def one_line(err: object) -> str:
    return " ".join(str(err).split())
