"""Scores of free-text answers against hand-worked values and scikit-learn (the reference for weighted F)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from contrastive_mer.errors import UserError
from contrastive_mer.evaluation.answer_scores import (
    AnswerFileError,
    Reference,
    Scorer,
    read_answers,
    read_references,
    score_files,
    weighted_f1,
)
from contrastive_mer.evaluation.emotion_words import Lexicon

REFS = {"a": Reference("happy"), "b": Reference("sad"), "c": Reference("angry"), "d": Reference("sad"),
        "e": Reference("neutral")}
ANSWERS = {
    "a": "She sounds cheerful, maybe a little surprised.",     # hit; first in the label set: happy
    "b": "He is not happy; he seems gloomy.",                  # hit (gloomy = sad); negated happy
    "c": "Frustrated and sad.",                                # hit (frustrated = angry), predicted angry
    "d": "The speaker is angry but also sad.",                 # hit, predicted angry (first mention)
    # "e" has no answer: scored as empty
}


def test_hand_worked_report() -> None:
    scorer = Scorer(REFS, Lexicon.load(), labels=["neutral", "happy", "sad", "angry"])
    metrics, rows = scorer.summary(ANSWERS)
    by_id = {r["id"]: r for r in rows}
    assert [by_id[c]["predicted"] for c in "abcde"] == ["happy", "sad", "angry", "angry", "<none>"]
    assert by_id["b"]["negated"] == ["happy"] and by_id["e"]["answered"] is False
    assert metrics["hit_rate"] == pytest.approx(4 / 5)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # by hand: happy F1 1 (1 clip), sad P1 R.5 F 2/3 (2 clips), angry P.5 R1 F 2/3 (1), neutral 0 (1)
    assert metrics["weighted_f1"] == pytest.approx((1 + 2 * 2 / 3 + 2 / 3 + 0) / 5)
    t, p = [by_id[c]["true_emotion"] for c in "abcde"], [by_id[c]["predicted"] for c in "abcde"]
    assert metrics["weighted_f1"] == pytest.approx(f1_score(t, p, average="weighted"))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(t, p))
    # sentiment from the lexicon: positive, negative, negative, negative, neutral; answers: positive, negative,
    # negative, negative, neutral (empty)
    assert metrics["sentiment_accuracy"] == pytest.approx(1.0)
    assert metrics["answered"] == 4 and metrics["clips"] == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["happy", "sad", "angry", "neutral", "<none>"]
    t = rng.choice(names[:4], 60).tolist()
    p = rng.choice(names, 60).tolist()
    assert weighted_f1(t, p) == pytest.approx(f1_score(t, p, average="weighted", zero_division=0))


def test_open_set_scores_with_a_wheel_map() -> None:
    refs = {"x": Reference(emotions=["joyful", "worried"]), "y": Reference(emotions=["irritated"])}
    wheel = {"joyful": "joy", "happy": "joy", "cheerful": "joy", "worried": "fear", "nervous": "fear",
             "irritated": "anger", "annoyed": "anger"}
    scorer = Scorer(refs, Lexicon.load(), synonyms=wheel)
    metrics, rows = scorer.summary({"x": "She is cheerful, nervous and a bit sad.", "y": "Not annoyed at all."})
    # x: predicted {joy, fear, sad} vs {joy, fear}: P 2/3, R 1; y: annoyed is negated -> nothing: P 0, R 0
    assert rows[0]["set_precision"] == pytest.approx(2 / 3) and rows[0]["set_recall"] == 1.0
    assert rows[1]["set_precision"] == 0.0 and rows[1]["set_recall"] == 0.0
    p, r = (2 / 3) / 2, 0.5
    assert metrics["set_precision"] == pytest.approx(p) and metrics["set_recall"] == pytest.approx(r)
    assert metrics["set_f1"] == pytest.approx(2 * p * r / (p + r))
    assert "hit_rate" not in metrics


def test_chance_rows() -> None:
    scorer = Scorer(REFS, Lexicon.load(), labels=["neutral", "happy", "sad", "angry"])
    chance = scorer.chance()
    assert chance["chance (uniform)"]["accuracy"] == 0.25
    assert chance["chance (majority)"]["accuracy"] == pytest.approx(2 / 5)  # sad
    assert chance["chance (majority)"]["weighted_f1"] == pytest.approx(
        f1_score(["happy", "sad", "angry", "sad", "neutral"], ["sad"] * 5, average="weighted", zero_division=0))
    # a uniform guess over 4 labels, simulated
    rng = np.random.default_rng(0)
    truth = ["happy", "sad", "angry", "sad", "neutral"] * 2000
    guess = rng.choice(["neutral", "happy", "sad", "angry"], len(truth)).tolist()
    assert chance["chance (uniform)"]["weighted_f1"] == pytest.approx(
        f1_score(truth, guess, average="weighted"), abs=0.01)


def test_files_and_baselines(tmp_path) -> None:
    refs = tmp_path / "refs.csv"
    refs.write_text("name,emotion,sentiment\na,happy,1.5\nb,sad,-2\nc,angry,neg\n")
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in
                               {"a": "happy", "b": "sad", "c": "angry", "zz": "sad"}.items()))
    zero = tmp_path / "zero.csv"  # MER2025 layout
    zero.write_text("name,openset\na,neutral\nb,neutral\nc,neutral\n")
    report = score_files(answers, refs, baselines={"zero tokens": zero})
    assert list(report["systems"])[:2] == ["answers", "zero tokens"]
    assert report["systems"]["answers"]["accuracy"] == 1.0
    assert report["systems"]["zero tokens"]["hit_rate"] == 0.0
    assert report["unmatched"] == {"answers": 1, "zero tokens": 0}
    assert read_references(refs)["c"].sentiment == "negative"


def test_bad_files_name_the_row(tmp_path) -> None:
    dup = tmp_path / "a.jsonl"
    dup.write_text('{"id": "a", "answer": "x"}\n{"id": "a", "answer": "y"}\n')
    with pytest.raises(AnswerFileError, match=r"a.jsonl: row 2: id 'a' appears twice"):
        read_answers(dup)
    refs = tmp_path / "r.csv"
    refs.write_text("id,emotion\nq,bored\n")
    with pytest.raises(UserError, match="emotion label 'bored' is not in the lexicon"):
        score_files(dup, refs)
    refs.write_text("id,sentiment\nq,great\n")
    with pytest.raises(AnswerFileError, match=r"r.csv: row 1 \(id 'q'\): sentiment 'great'"):
        read_references(refs)
