"""Template sentences for the synthetic corpus.

Every sentence states something neutral (who did what, when). In a fraction of clips (more often when the
clip's expression is intense) an emotion phrase is appended whose word names the clip's emotion, or, with a
small probability, a neighbouring emotion. An intensity adverb follows the clip's intensity; the final
punctuation follows arousal; speaker-specific fillers ("um", "you know") are nuisance words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("indifferent", "unbothered", "neutral", "matter-of-fact", "unmoved"),
    "happy": ("delighted", "happy", "thrilled", "glad", "cheerful"),
    "sad": ("miserable", "heartbroken", "sad", "gloomy", "devastated"),
    "angry": ("furious", "angry", "livid", "annoyed", "outraged"),
    "fearful": ("terrified", "scared", "anxious", "afraid", "nervous"),
    "surprised": ("astonished", "surprised", "amazed", "shocked", "stunned"),
    "calm": ("relaxed", "calm", "peaceful", "serene", "settled"),
    "disgusted": ("disgusted", "revolted", "sickened", "repulsed", "appalled"),
}

_SUBJECTS = ("I", "we", "my sister", "the neighbours", "our manager", "the kids", "my friend", "they")
_VERBS = ("moved", "checked", "painted", "opened", "carried", "counted", "found", "fixed", "sorted", "cleaned")
_OBJECTS = ("the kitchen table", "the blue door", "the old letters", "the garden fence", "the train tickets",
            "the spare keys", "the window", "the boxes", "the shelves", "the car")
_TIMES = ("this morning", "yesterday", "last week", "on tuesday", "after lunch", "before dinner", "again today",
          "at noon")
_PHRASES = ("and I am {adv}{word}", "which left me {adv}{word}", "so I feel {adv}{word}",
            "and honestly I was {adv}{word}")
_FILLERS = ("um", "uh", "like", "you know", "basically", "well", "so", "I mean", "actually", "right")


@dataclass(frozen=True)
class TextTraits:
    """Speaker-specific verbal habits."""

    fillers: tuple[str, ...]
    filler_prob: float


def sample_text_traits(rng: np.random.Generator) -> TextTraits:
    """Draw one speaker's verbal habits: two favourite fillers and how often they are used."""
    picks = rng.choice(len(_FILLERS), size=2, replace=False)
    return TextTraits(fillers=tuple(_FILLERS[i] for i in picks), filler_prob=float(rng.uniform(0.2, 0.7)))


def make_sentence(traits: TextTraits, emotion: str, neighbour: str, state: np.ndarray, *, intensity: float,
                  rng: np.random.Generator, emotion_word_fraction: float, confusion: float,
                  mean_intensity: float) -> str:
    """Compose one clip's transcript.

    Args:
        traits: the speaker's verbal habits.
        emotion: the clip's emotion name (a key of :data:`EMOTION_WORDS`).
        neighbour: the emotion whose word is used instead with probability ``confusion``.
        state: the clip's latent emotion state ``(valence, arousal, dominance)``.
        intensity: the clip's expression intensity; the chance of an emotion phrase scales with it so that
            on average it is ``emotion_word_fraction``.
        rng: the clip's text random stream.
        mean_intensity: the corpus' mean intensity (normalises the chance above).
    """
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    words = [pick(_SUBJECTS), pick(_VERBS), pick(_OBJECTS), pick(_TIMES)]
    if rng.uniform() < traits.filler_prob:
        words.insert(0 if rng.uniform() < 0.6 else 3, pick(traits.fillers) + ",")
    p_word = min(1.0, emotion_word_fraction * intensity / max(mean_intensity, 1e-6))
    if rng.uniform() < p_word:
        name = neighbour if rng.uniform() < confusion else emotion
        adv = "really " if intensity > 0.85 else ("a bit " if intensity < 0.6 else "")
        words.append(pick(_PHRASES).format(adv=adv, word=pick(EMOTION_WORDS[name])))
    end = "!" if float(state[1]) + 0.3 * rng.normal() > 0.6 else "."
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + end
