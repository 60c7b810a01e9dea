"""Instruction data for the front end: JSONL rows ``{id, prompt, answer}`` (or a chat ``messages`` list) that refer
to clips of a feature store, chat templates applied with the tokenizer's own ``apply_chat_template`` (soft-token
placeholders kept in place), and a generator turning labelled clips into rows.

A row's ``clip`` names the store row it refers to (default: its ``id``), so several rows may share one clip.
With ``messages``, the last ``assistant`` message is the answer and everything before it is the prompt.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from contrastive_mer.errors import UserError

#: the prompt phrasings of :func:`instruction_rows` (``{tokens}`` is where the soft-token placeholders go)
PROMPTS = (
    "{tokens} What emotion does this person express?",
    "{tokens} How does the speaker feel?",
    "{tokens} Describe the emotional state of the person in a few words.",
    "{tokens} Which emotion is shown in this clip?",
)
#: answer phrasings; ``{sentiment}`` ones are used only where the clip has a sentiment label
ANSWERS = ("{emotion}", "The person sounds {emotion}.", "The speaker feels {emotion}.")
ANSWERS_WITH_SENTIMENT = ("The person sounds {emotion}; the sentiment is {sentiment}.",)


class InstructionError(UserError):
    """An instruction file or row that cannot be used; the message names the file, the line and the key."""


@dataclass
class InstructionRow:
    """One instruction: ``prompt`` (user text with placeholders) or ``messages`` (a chat without its final
    answer), the target ``answer`` (None for generation), and the ``clip`` it refers to."""

    id: str
    prompt: str = ""
    answer: str | None = None
    messages: list[dict[str, str]] | None = None
    clip: str = ""

    def __post_init__(self) -> None:
        self.clip = self.clip or self.id

    def chat(self) -> list[dict[str, str]]:
        """The conversation to template: ``messages``, or one user turn holding ``prompt``."""
        return list(self.messages) if self.messages else [{"role": "user", "content": self.prompt}]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.clip != self.id:
            out["clip"] = self.clip
        if self.messages:
            out["messages"] = self.messages + ([{"role": "assistant", "content": self.answer}]
                                               if self.answer is not None else [])
        else:
            out["prompt"] = self.prompt
            if self.answer is not None:
                out["answer"] = self.answer
        return out


def parse_row(data: Mapping[str, Any], where: str) -> InstructionRow:
    """One JSON object -> :class:`InstructionRow`; ``where`` (file and line) prefixes every error."""
    if "id" not in data:
        raise InstructionError(f"{where}: no 'id'")
    rid, clip = str(data["id"]), str(data.get("clip", "") or "")
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise InstructionError(f"{where} (id {rid!r}): 'messages' must be a non-empty list")
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise InstructionError(f"{where} (id {rid!r}): every message needs string 'role' and 'content'")
        answer = None
        if messages[-1]["role"] == "assistant":
            answer, messages = messages[-1]["content"], messages[:-1]
        if not messages:
            raise InstructionError(f"{where} (id {rid!r}): 'messages' holds only the answer")
        return InstructionRow(rid, answer=answer, messages=[dict(m) for m in messages], clip=clip)
    if not isinstance(data.get("prompt"), str):
        raise InstructionError(f"{where} (id {rid!r}): needs a 'prompt' string or a 'messages' list")
    answer = data.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise InstructionError(f"{where} (id {rid!r}): 'answer' must be a string")
    return InstructionRow(rid, data["prompt"], answer, clip=clip)


def read_instructions(path: str | Path) -> list[InstructionRow]:
    """Rows of a JSONL instruction file (ids must be distinct)."""
    path = Path(path)
    if not path.is_file():
        raise InstructionError(f"{path}: file not found")
    rows: list[InstructionRow] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise InstructionError(f"{path}: line {n} is not JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise InstructionError(f"{path}: line {n} is not a JSON object")
        row = parse_row(data, f"{path}: line {n}")
        if row.id in seen:
            raise InstructionError(f"{path}: line {n}: id {row.id!r} appears twice")
        seen.add(row.id)
        rows.append(row)
    if not rows:
        raise InstructionError(f"{path}: no instruction rows")
    return rows


def write_instructions(path: str | Path, rows: Sequence[InstructionRow]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows), encoding="utf-8")
    return path


def render_prompt(row: InstructionRow, tokenizer: Any, placeholders: Sequence[str], *, chat: bool = True,
                  system: str | None = None) -> str:
    """The prompt text the splicer takes: with ``chat``, the tokenizer's own chat template with the generation
    prompt (the answer follows it); without, the plain prompt (``messages`` joined by newlines).

    Raises :class:`InstructionError` when the tokenizer has no chat template, or when the template changed the
    number of any placeholder (it must pass them through as text)."""
    messages = ([{"role": "system", "content": system}] if system else []) + row.chat()
    if not chat:
        return "\n".join(m["content"] for m in messages)
    if not getattr(tokenizer, "chat_template", None):
        raise InstructionError(f"row {row.id!r}: the tokenizer has no chat template; set chat off (plain prompts)")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    for p in placeholders:
        given = sum(m["content"].count(p) for m in messages)
        if text.count(p) != given:
            raise InstructionError(f"row {row.id!r}: the chat template turned {given} {p!r} into {text.count(p)}")
    return str(text)


def template_writes_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template starts with its BOS token (then splice with ``add_bos=False``)."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not getattr(tokenizer, "chat_template", None):
        return False
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                         add_generation_prompt=True)
    return str(text).startswith(bos)


@dataclass
class RowRecipe:
    """How :func:`instruction_rows` words its rows: the placeholder text, prompt and answer phrasings, and
    how many rows per clip (each with a phrasing drawn by a seeded generator)."""

    tokens: str = "Audio: <audio> Video: <video> Text: <text> Overall: <fused>"
    prompts: Sequence[str] = PROMPTS
    answers: Sequence[str] = ANSWERS
    answers_with_sentiment: Sequence[str] = ANSWERS_WITH_SENTIMENT
    rows_per_clip: int = 1
    seed: int = 0

    def words(self) -> list[str]:
        """Every fixed text of the recipe (to build a word-level tokenizer that knows them)."""
        return [self.tokens, *self.prompts, *self.answers, *self.answers_with_sentiment]


def instruction_rows(clips: Sequence[str], emotions: Sequence[str | None], *,
                     sentiments: Sequence[str | None] | None = None,
                     recipe: RowRecipe | None = None) -> list[InstructionRow]:
    """Rows naming each labelled clip's emotion (and sentiment where given); clips without an emotion are
    skipped. With ``rows_per_clip`` > 1 the ids are ``<clip>#<k>``."""
    recipe = recipe or RowRecipe()
    if len(emotions) != len(clips) or (sentiments is not None and len(sentiments) != len(clips)):
        raise ValueError("instruction_rows: clips, emotions and sentiments differ in length")
    rng = random.Random(recipe.seed)
    rows = []
    for i, clip in enumerate(clips):
        emotion = emotions[i]
        if emotion is None:
            continue
        sentiment = sentiments[i] if sentiments is not None else None
        for k in range(recipe.rows_per_clip):
            prompt = rng.choice(list(recipe.prompts)).format(tokens=recipe.tokens)
            pool = list(recipe.answers) + (list(recipe.answers_with_sentiment) if sentiment else [])
            answer = rng.choice(pool).format(emotion=emotion, sentiment=sentiment)
            rid = clip if recipe.rows_per_clip == 1 else f"{clip}#{k}"
            rows.append(InstructionRow(rid, prompt, answer, clip=clip))
    return rows


def store_instruction_rows(store: Any, *, label: str = "emotion", sentiment_label: str | None = None,
                           recipe: RowRecipe | None = None, rows: Sequence[int] | None = None) -> list[InstructionRow]:
    """:func:`instruction_rows` for the clips of a feature store whose ``label`` has class names (a missing
    label, stored as a negative code, is skipped)."""
    def names_of(name: str) -> list[str | None]:
        if name not in store.label_names():
            raise InstructionError(f"{store.path}: no label {name!r}; it has {store.label_names()}")
        classes = store.class_names(name)
        if not classes:
            raise InstructionError(f"{store.path}: label {name!r} has no class names")
        codes = store.labels(name)
        picked = range(len(codes)) if rows is None else rows
        return [classes[int(codes[r])] if 0 <= int(codes[r]) < len(classes) else None for r in picked]

    ids = [str(store.ids[r]) for r in (range(len(store)) if rows is None else rows)]
    return instruction_rows(ids, names_of(label), sentiments=names_of(sentiment_label) if sentiment_label else None,
                            recipe=recipe)
