"""Emotion words in free text: synonyms, negation scope, several emotions per answer, user lexicons and maps."""

from __future__ import annotations

import json

import pytest

from contrastive_mer.evaluation.emotion_words import Lexicon, LexiconError, extract, polarity, read_synonym_map


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load()


@pytest.mark.parametrize("text, emotions, negated", [
    ("The speaker sounds joyful.", ["happy"], []),                                    # synonym -> group
    ("She is not happy.", [], ["happy"]),                                             # negation
    ("She isn't feeling very happy; she is disappointed", ["sad"], ["happy"]),         # n't, window of 3
    ("He seems angry and a bit scared, but not sad", ["angry", "fearful"], ["sad"]),   # several; scope after 'but'
    ("Neither happy nor sad, just calm", ["calm"], ["happy", "sad"]),                 # neither / nor
    ("No, she is happy", ["happy"], []),                                              # the comma ends the scope
    ("No emotion at all: a neutral reading", ["neutral"], []),                        # a phrase beats the cue
    ("The man is at ease, glad and HAPPY", ["calm", "happy"], []),                    # phrases; one group once
    ("not happy at first, then happy", ["happy"], []),                                # asserted wins over negated
    ("I would not say that she is angry", ["angry"], []),     # 5 words after the cue: outside the window (a limit)
    ("The weather report for Tuesday", [], []),
])
def test_hand_worked_extractions(lexicon: Lexicon, text: str, emotions: list[str], negated: list[str]) -> None:
    got = extract(text, lexicon)
    assert got.emotions == emotions
    assert got.negated == negated


@pytest.mark.parametrize("text, expected", [
    ("She is happy and relieved", "positive"),
    ("She is not happy", "negative"),          # a negated positive word reads as negative
    ("She is not sad", "neutral"),             # a negated negative word is not joy
    ("happy but also furious and scared", "negative"),
    ("surprised", "neutral"),
    ("", "neutral"),
])
def test_polarity(lexicon: Lexicon, text: str, expected: str) -> None:
    assert polarity(extract(text, lexicon), lexicon) == expected


def test_a_user_lexicon_replaces_the_shipped_one(tmp_path) -> None:
    path = tmp_path / "lex.yaml"
    path.write_text("emotions:\n  joy: {sentiment: positive, words: [happy, over the moon]}\n"
                    "negations: [not]\nnegation_window: 1\n")
    lex = Lexicon.load(path)
    assert lex.groups == ["joy"]
    assert extract("she is over the moon", lex).emotions == ["joy"]
    assert extract("not very happy", lex).emotions == ["joy"]  # window 1: 'very' ends the scope
    assert extract("she is sad", lex).emotions == []


def test_bad_lexicons_are_one_line_errors(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"emotions": {"a": {"words": ["x"]}, "b": {"words": ["x"]}}}))
    with pytest.raises(LexiconError, match=r"bad.json: 'x' is in both 'a' and 'b'"):
        Lexicon.load(bad)
    bad.write_text(json.dumps({"emotions": {"a": {"sentiment": "good", "words": ["x"]}}}))
    with pytest.raises(LexiconError, match=r"emotions.a.sentiment is 'good'"):
        Lexicon.load(bad)
    bad.write_text("{not json")
    with pytest.raises(LexiconError, match="not valid json"):
        Lexicon.load(bad)


def test_synonym_maps_in_both_directions(tmp_path) -> None:
    by_group, by_word = tmp_path / "g.json", tmp_path / "w.json"
    by_group.write_text(json.dumps({"joy": ["happy", "cheerful"], "worry": ["anxious"]}))
    by_word.write_text(json.dumps({"happy": "joy", "cheerful": "joy", "anxious": "worry"}))
    assert read_synonym_map(by_group) == {**read_synonym_map(by_word), "joy": "joy", "worry": "worry"}
