"""Benchmark-style scores of free-text answers (what ``cmer score-answers`` does): the emotion words of each
answer (:mod:`~contrastive_mer.evaluation.emotion_words`) against the reference labels of each clip.

Scores, MER-UniBench style (no judge LLM):

* ``hit_rate``: the clip's true emotion is among the emotions the answer asserts (any number of them);
* ``accuracy`` / ``weighted_f1`` over a fixed label set: the answer's first asserted emotion in the set is its
  prediction (``<none>`` when there is none, always wrong);
* ``sentiment_accuracy`` / ``sentiment_weighted_f1``: the answer's polarity
  (:func:`~contrastive_mer.evaluation.emotion_words.polarity`) against the reference ``sentiment`` (or the
  lexicon's polarity of the true emotion);
* ``set_precision`` / ``set_recall`` / ``set_f1`` (OV-MERD style): per clip the answer's emotion groups against the
  reference emotion set, both mapped through the synonym / wheel map; precision and recall averaged over clips,
  F from the two averages. An answer with no emotion has precision and recall 0.

Chance rows (uniform guess and majority class over the label set) and any baseline answers (e.g. generated with
zeroed soft tokens) are scored in the same report.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from contrastive_mer.errors import UserError
from contrastive_mer.evaluation.emotion_words import Extraction, Lexicon, extract, polarity, words

NONE = "<none>"
_ID_COLUMNS = ("id", "name", "sample", "sample_name")
_ANSWER_COLUMNS = ("answer", "openset", "reason", "discrete", "text")
_SET_SPLIT = (";", ",", "|", "/")


class AnswerFileError(UserError):
    """An answers or references file that cannot be used; the message names the file, the row and the key."""


@dataclass
class Reference:
    """The labels of one clip: a single ``emotion`` (may be None), an optional ``sentiment`` and an optional
    open-vocabulary ``emotions`` set."""

    emotion: str | None = None
    sentiment: str | None = None
    emotions: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ reading files
def _rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise AnswerFileError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise AnswerFileError(f"{path}: line {n} is not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise AnswerFileError(f"{path}: line {n} is not a JSON object")
            rows.append(row)
        return rows
    if path.suffix.lower() in (".csv", ".tsv"):
        return list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    raise AnswerFileError(f"{path}: expected .jsonl, .csv or .tsv")


def _column(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in row), None)


def read_answers(path: str | Path) -> dict[str, str]:
    """id -> answer text from ``answers.jsonl`` (``id``, ``answer``) or a CSV in MER2025's layout (``name`` and
    one of ``answer``, ``openset``, ``reason``, ``discrete``)."""
    out: dict[str, str] = {}
    for n, row in enumerate(_rows(path), 1):
        id_key, ans_key = _column(row, _ID_COLUMNS), _column(row, _ANSWER_COLUMNS)
        if id_key is None or ans_key is None:
            raise AnswerFileError(f"{path}: row {n} needs an id column ({'/'.join(_ID_COLUMNS)}) and an answer "
                                  f"column ({'/'.join(_ANSWER_COLUMNS)}); got {sorted(row)}")
        clip = str(row[id_key])
        if clip in out:
            raise AnswerFileError(f"{path}: row {n}: id {clip!r} appears twice")
        value = row[ans_key]
        out[clip] = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
    return out


def _as_set(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    for sep in _SET_SPLIT:
        text = text.replace(sep, ";")
    return [t.strip() for t in text.split(";") if t.strip()]


def _sentiment(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        text = str(value).strip().lower()
        aliases = {"pos": "positive", "neg": "negative", "neu": "neutral"}
        text = aliases.get(text, text)
        if text not in ("positive", "negative", "neutral"):
            raise AnswerFileError(f"{where}: sentiment {value!r} is not positive/negative/neutral or a number")
        return text
    return "positive" if number > 0 else "negative" if number < 0 else "neutral"


def read_references(path: str | Path) -> dict[str, Reference]:
    """id -> :class:`Reference` from a JSONL or CSV file with an id column (``id``/``name``) and any of
    ``emotion`` (or ``label``), ``sentiment`` (a word or a number: its sign) and ``emotions`` (or
    ``openset``: a list, or words separated by ``; , | /``)."""
    out: dict[str, Reference] = {}
    for n, row in enumerate(_rows(path), 1):
        id_key = _column(row, _ID_COLUMNS)
        if id_key is None:
            raise AnswerFileError(f"{path}: row {n} has no id column ({'/'.join(_ID_COLUMNS)}); got {sorted(row)}")
        clip = str(row[id_key])
        if clip in out:
            raise AnswerFileError(f"{path}: row {n}: id {clip!r} appears twice")
        emo_key = _column(row, ("emotion", "label"))
        set_key = _column(row, ("emotions", "openset"))
        emotion = row.get(emo_key) if emo_key else None
        ref = Reference(emotion=str(emotion).strip() if emotion not in (None, "") else None,
                        sentiment=_sentiment(row.get("sentiment"), f"{path}: row {n} (id {clip!r})"),
                        emotions=_as_set(row.get(set_key)) if set_key else [])
        if ref.emotion is None and ref.sentiment is None and not ref.emotions:
            raise AnswerFileError(f"{path}: row {n} (id {clip!r}) has no emotion, sentiment or emotions value")
        out[clip] = ref
    if not out:
        raise AnswerFileError(f"{path}: no reference rows")
    return out


# ------------------------------------------------------------------------------------------------------ metrics
def weighted_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """F1 per true class weighted by its support (scikit-learn's ``average="weighted"``; a predicted class that
    never occurs in ``y_true`` weighs 0)."""
    t, p = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if len(t) == 0:
        return float("nan")
    total = 0.0
    for c in set(t.tolist()):
        tp = float(np.sum((t == c) & (p == c)))
        support, predicted = float(np.sum(t == c)), float(np.sum(p == c))
        f1 = 2 * tp / (support + predicted) if support + predicted else 0.0
        total += support * f1
    return total / len(t)


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(np.mean(np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object))) if y_true \
        else float("nan")


@dataclass
class Scorer:
    """Scores answers against references with one lexicon, an optional fixed label set (names the lexicon
    knows; default: the reference emotions) and an optional synonym / wheel map (word -> group) for the
    open-vocabulary set scores."""

    references: dict[str, Reference]
    lexicon: Lexicon
    labels: list[str] | None = None
    synonyms: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.canonical: dict[str, str] = {}  # reference emotion name -> lexicon group
        names = list(self.labels or []) + [r.emotion for r in self.references.values() if r.emotion]
        for name in names:
            group = self.lexicon.group_of(name)
            if group is None:
                raise UserError(f"emotion label {name!r} is not in the lexicon ({self.lexicon.source}); add it "
                                f"to a lexicon file's words (--lexicon) or fix the label")
            self.canonical[name] = group
        groups = [self.canonical[n] for n in (self.labels or sorted({r.emotion for r in self.references.values()
                                                                      if r.emotion}))]
        self.label_groups = list(dict.fromkeys(groups))
        self.ov_lexicon = self.lexicon.with_groups(self.synonyms) if self.synonyms else self.lexicon

    def _group(self, word: str) -> str:
        """A reference open-set word's group: the synonym map, else the lexicon, else the word itself."""
        key = " ".join(words(word))
        if self.synonyms and word in self.synonyms:
            return self.synonyms[word]
        if self.synonyms and key in self.synonyms:
            return self.synonyms[key]
        return self.ov_lexicon.group_of(word) or key

    def _true_polarity(self, ref: Reference) -> str | None:
        """The reference sentiment, else the lexicon's polarity of the reference emotion, else None."""
        if ref.sentiment is not None:
            return ref.sentiment
        return self.lexicon.sentiment.get(self.canonical[ref.emotion]) if ref.emotion is not None else None

    def per_clip(self, answers: Mapping[str, str]) -> list[dict[str, Any]]:
        """One row per reference clip (a clip without an answer is scored as an empty answer)."""
        rows = []
        for clip, ref in self.references.items():
            text = answers.get(clip, "")
            ex: Extraction = extract(text, self.lexicon)
            row: dict[str, Any] = {"id": clip, "answered": clip in answers, "emotions": ex.emotions,
                                   "negated": ex.negated, "answer": text}
            if ref.emotion is not None:
                truth = self.canonical[ref.emotion]
                pred = next((g for g in ex.emotions if g in self.label_groups), NONE)
                row.update(true_emotion=truth, predicted=pred, hit=truth in ex.emotions)
            true_pol = self._true_polarity(ref)
            if true_pol is not None:
                row.update(true_sentiment=true_pol, predicted_sentiment=polarity(ex, self.lexicon))
            if ref.emotions:
                gold = {self._group(w) for w in ref.emotions}
                pred_set = set(extract(text, self.ov_lexicon).emotions)
                common = len(gold & pred_set)
                row.update(set_precision=common / len(pred_set) if pred_set else 0.0,
                           set_recall=common / len(gold))
            rows.append(row)
        return rows

    def summary(self, answers: Mapping[str, str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """``(metrics, per-clip rows)`` of one answers mapping."""
        rows = self.per_clip(answers)
        out: dict[str, float] = {"clips": float(len(rows)), "answered": float(sum(r["answered"] for r in rows))}
        emo = [r for r in rows if "true_emotion" in r]
        if emo:
            t, p = [r["true_emotion"] for r in emo], [r["predicted"] for r in emo]
            out.update(hit_rate=float(np.mean([r["hit"] for r in emo])), accuracy=accuracy(t, p),
                       weighted_f1=weighted_f1(t, p))
        sen = [r for r in rows if "true_sentiment" in r]
        if sen:
            t, p = [r["true_sentiment"] for r in sen], [r["predicted_sentiment"] for r in sen]
            out.update(sentiment_accuracy=accuracy(t, p), sentiment_weighted_f1=weighted_f1(t, p))
        ov = [r for r in rows if "set_precision" in r]
        if ov:
            prec, rec = float(np.mean([r["set_precision"] for r in ov])), float(np.mean([r["set_recall"] for r in ov]))
            out.update(set_precision=prec, set_recall=rec,
                       set_f1=2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        return out, rows

    def chance(self) -> dict[str, dict[str, float]]:
        """Expected scores of a uniform guess over the label set and of always answering the majority class
        (emotion and sentiment)."""
        out: dict[str, dict[str, float]] = {"chance (uniform)": {}, "chance (majority)": {}}
        truth = [self.canonical[r.emotion] for r in self.references.values() if r.emotion is not None]
        if truth:
            k = len(self.label_groups)
            share = {c: truth.count(c) / len(truth) for c in set(truth)}
            out["chance (uniform)"].update(
                hit_rate=1 / k, accuracy=1 / k,
                weighted_f1=sum(s * 2 * s / k / (s + 1 / k) for c, s in share.items() if c in self.label_groups))
            major = max(sorted(share), key=lambda c: share[c])
            out["chance (majority)"].update(hit_rate=share[major], accuracy=share[major],
                                            weighted_f1=weighted_f1(truth, [major] * len(truth)))
        pols = [p for p in (self._true_polarity(r) for r in self.references.values()) if p is not None]
        if pols:
            major_p = max(sorted(set(pols)), key=pols.count)
            out["chance (majority)"].update(sentiment_accuracy=pols.count(major_p) / len(pols),
                                            sentiment_weighted_f1=weighted_f1(pols, [major_p] * len(pols)))
        return {k: v for k, v in out.items() if v}


METRIC_ORDER = ("hit_rate", "accuracy", "weighted_f1", "sentiment_accuracy", "sentiment_weighted_f1",
                "set_precision", "set_recall", "set_f1", "answered", "clips")


def score_files(answers: str | Path, references: str | Path, *, baselines: Mapping[str, str | Path] | None = None,
                lexicon: str | Path | None = None, labels: Sequence[str] | None = None,
                synonyms: str | Path | None = None) -> dict[str, Any]:
    """The report of ``cmer score-answers``: ``{"systems": {name: metrics}, "per_clip": {name: rows},
    "labels": [...], "unmatched": {name: n}}``; the first system is ``answers``, then each baseline, then the
    chance rows."""
    from contrastive_mer.evaluation.emotion_words import read_synonym_map

    scorer = Scorer(read_references(references), Lexicon.load(lexicon), list(labels) if labels else None,
                    read_synonym_map(synonyms) if synonyms else None)
    systems: dict[str, dict[str, float]] = {}
    per_clip: dict[str, list[dict[str, Any]]] = {}
    unmatched: dict[str, int] = {}
    for name, path in {"answers": answers, **dict(baselines or {})}.items():
        given = read_answers(path)
        systems[name], per_clip[name] = scorer.summary(given)
        unmatched[name] = sum(1 for clip in given if clip not in scorer.references)
    systems.update(scorer.chance())
    return {"systems": systems, "per_clip": per_clip, "labels": scorer.label_groups, "unmatched": unmatched}


def format_table(systems: Mapping[str, Mapping[str, float]]) -> str:
    """The summary as a fixed-width text table (one row per system)."""
    metrics = [m for m in METRIC_ORDER if any(m in s for s in systems.values())]
    width = max(len(n) for n in systems) + 2
    lines = ["".ljust(width) + "".join(m.rjust(max(len(m), 8) + 2) for m in metrics)]
    for name, values in systems.items():
        cells = []
        for m in metrics:
            v = values.get(m)
            text = "-" if v is None else f"{v:.0f}" if m in ("answered", "clips") else f"{v:.3f}"
            cells.append(text.rjust(max(len(m), 8) + 2))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def write_per_clip(path: str | Path, per_clip: Mapping[str, list[dict[str, Any]]]) -> Path:
    """All systems' per-clip rows in one CSV (column ``system`` first; lists joined with ``;``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ["system"] + list(dict.fromkeys(k for rows in per_clip.values() for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for system, rows in per_clip.items():
            for r in rows:
                writer.writerow({"system": system, **{k: ";".join(v) if isinstance(v, list) else v
                                                      for k, v in r.items()}})
    return path
