"""The examples that task readers produce and task models consume, one dataclass per family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TextExample:
    """One sentence or sentence pair with a class label (str), a score (float) or no label."""

    text: str
    text_pair: str | None
    label: str | float | None
    id: str


@dataclass
class ChoiceExample:
    """A multiple-choice question (SWAG): a context and candidate endings; label indexes them."""

    context: str
    endings: list[str]
    label: int | None
    id: str


@dataclass
class TaggedSentence:
    """A sentence as words (or characters) with one tag per word, or no tags."""

    words: list[str]
    tags: list[str] | None
    id: str


@dataclass
class QAExample:
    """One question on one passage; ``answers`` are ``{"text", "answer_start"}`` dicts."""

    id: str
    question: str
    context: str
    answers: list[dict[str, Any]] = field(default_factory=list)
    is_impossible: bool = False
