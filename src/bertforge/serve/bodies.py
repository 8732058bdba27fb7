"""Request bodies: each route's fields, checked where they enter, with errors that name the field.

One declaration per route (``BODIES``) gives both the checks and the JSON schema that /docs shows, so
the two cannot drift. Every problem is a :class:`RequestError` with an HTTP status and the field's path
(``inputs[3].context``); the app turns it into ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 32 << 20  # a request body larger than this is answered 413 before it is parsed


class RequestError(Exception):
    """An HTTP error answer: status, a message for the client, the field at fault (or None)."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def invalid(message: str, field: str | None) -> RequestError:
    return RequestError(422, message, field)


def json_type(value: Any) -> str:
    """The JSON name of a value's type (number, not int)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; 422 naming ``body`` if it is empty, not UTF-8, or not JSON."""
    if not raw.strip():
        raise invalid("the request body is empty; send a JSON object", "body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"the request body is not UTF-8 (byte {e.start} is 0x{raw[e.start]:02x})", "body") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise invalid(f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})", "body") from None
    if not isinstance(data, dict):
        raise invalid(f"expected a JSON object, got {json_type(data)}", "body")
    return data


def text(value: Any, where: str) -> str:
    """A non-blank string that UTF-8 can encode (JSON may smuggle in unpaired surrogates)."""
    if not isinstance(value, str):
        raise invalid(f"expected text, got {json_type(value)}", where)
    if not value.strip():
        raise invalid("is empty" if not value else "holds only whitespace", where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise invalid(f"holds an unpaired surrogate (U+{ord(value[e.start]):04X}) at character {e.start}",
                      where) from None
    return value


# --- what one input may be ----------------------------------------------------------------------

TEXT_SCHEMA = {"type": "string", "minLength": 1}


def _text_input(value: Any, where: str) -> tuple[str, None]:
    return text(value, where), None


def _pair_input(value: Any, where: str) -> tuple[str, str | None]:
    """A text, ``[text, text_pair]`` or ``{"text": ..., "text_pair": ...}``."""
    if isinstance(value, list):
        if len(value) != 2:
            raise invalid(f"a pair is [text, text_pair], got an array of {len(value)}", where)
        return text(value[0], f"{where}[0]"), text(value[1], f"{where}[1]")
    if isinstance(value, dict):
        _no_unknown(value, ("text", "text_pair"), where)
        if "text" not in value:
            raise invalid("missing field 'text' (a pair is {\"text\": ..., \"text_pair\": ...})", f"{where}.text")
        pair = value.get("text_pair")
        return text(value["text"], f"{where}.text"), None if pair is None else text(pair, f"{where}.text_pair")
    return text(value, where), None


def _fields(value: Any, names: tuple[str, ...], what: str, route: str, where: str) -> None:
    """``value`` is an object with exactly the fields ``names`` (``what`` says them in words)."""
    if not isinstance(value, dict):
        raise invalid(f"expected an object with {what}, got {json_type(value)}", where)
    _no_unknown(value, names, where)
    for name in names:
        if name not in value:
            raise invalid(f"missing field {name!r} ({route} needs {what})", f"{where}.{name}")


def _qa_input(value: Any, where: str) -> tuple[str, str]:
    """``{"question": ..., "context": ...}``."""
    _fields(value, ("question", "context"), "a question and a context", "/qa", where)
    return text(value["question"], f"{where}.question"), text(value["context"], f"{where}.context")


MAX_ENDINGS = 64  # endings of one multiple-choice input


def _choice_input(value: Any, where: str) -> tuple[str, tuple[str, ...]]:
    """``{"context": ..., "endings": [...]}``."""
    _fields(value, ("context", "endings"), "a context and its endings", "/choice", where)
    endings = value["endings"]
    if not isinstance(endings, list):
        raise invalid(f"expected an array of texts, got {json_type(endings)}", f"{where}.endings")
    if not endings:
        raise invalid("is an empty list; give at least one ending", f"{where}.endings")
    if len(endings) > MAX_ENDINGS:
        raise RequestError(413, f"{len(endings)} endings, more than the limit of {MAX_ENDINGS}", f"{where}.endings")
    return (text(value["context"], f"{where}.context"),
            tuple(text(e, f"{where}.endings[{j}]") for j, e in enumerate(endings)))


INPUT_KINDS = {
    "text": (_text_input, TEXT_SCHEMA),
    "pair": (_pair_input, {"oneOf": [TEXT_SCHEMA, {"type": "array", "items": TEXT_SCHEMA, "minItems": 2, "maxItems": 2},
                                     {"type": "object", "required": ["text"], "additionalProperties": False,
                                      "properties": {"text": TEXT_SCHEMA, "text_pair": TEXT_SCHEMA}}]}),
    "qa": (_qa_input, {"type": "object", "required": ["question", "context"], "additionalProperties": False,
                       "properties": {"question": TEXT_SCHEMA, "context": TEXT_SCHEMA}}),
    "choice": (_choice_input, {"type": "object", "required": ["context", "endings"], "additionalProperties": False,
                               "properties": {"context": TEXT_SCHEMA, "endings": {
                                   "type": "array", "items": TEXT_SCHEMA, "minItems": 1, "maxItems": MAX_ENDINGS}}}),
}


def _no_unknown(obj: dict, known: tuple[str, ...], where: str) -> None:
    for name in obj:
        if name not in known:
            raise invalid(f"unknown field {name!r}; expected {', '.join(known)}", f"{where}.{name}" if where else name)


# --- options ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """A body field beside ``inputs``: a JSON boolean, integer or string, maybe null."""

    name: str
    kind: type  # bool, int or str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min: int | None = None
    max: int | None = None
    nullable: bool = False

    def parse(self, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        ok = isinstance(value, self.kind) and (self.kind is bool or not isinstance(value, bool))
        if not ok:
            name = {bool: "a boolean", int: "an integer", str: "a string"}[self.kind]
            raise invalid(f"expected {name}{' or null' if self.nullable else ''}, got {json_type(value)}", self.name)
        if self.choices is not None and value not in self.choices:
            raise invalid(f"must be one of {', '.join(self.choices)}, got {value!r}", self.name)
        if self.min is not None and value < self.min:
            raise invalid(f"must be at least {self.min}, got {value}", self.name)
        if self.max is not None and value > self.max:
            raise invalid(f"must be at most {self.max}, got {value}", self.name)
        return value

    def schema(self) -> dict[str, Any]:
        kind = {bool: "boolean", int: "integer", str: "string"}[self.kind]
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind, "description": self.help,
                                  "default": self.default}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        return schema


TRUNCATE = Option("truncate", bool, None, "cut inputs longer than the limit instead of answering 413 "
                  "(default: the server's --truncate)", nullable=True)


@dataclass
class Parsed:
    """A checked body: the inputs as a list, where each came from, whether one was sent alone, options."""

    inputs: list[tuple]
    fields: list[str]
    single: bool
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def chars(self) -> int:
        """Characters of text in all the inputs."""
        return sum(len(x) if isinstance(x, str) else sum(map(len, x or ())) for item in self.inputs for x in item)


@dataclass(frozen=True)
class Body:
    """What one route's body holds: ``inputs`` of one kind (one or a list), and options."""

    inputs: str  # a key of INPUT_KINDS
    options: tuple[Option, ...]
    summary: str
    example: dict[str, Any]

    def parse(self, data: dict[str, Any], max_inputs: int) -> Parsed:
        known = ("inputs", *(o.name for o in self.options))
        _no_unknown(data, known, "")
        if "inputs" not in data:
            raise invalid(f"missing field 'inputs' (this route takes {', '.join(known)})", "inputs")
        raw = data["inputs"]
        # A list is a batch, except for a text pair given as [text, text_pair] inside it.
        single = not isinstance(raw, list)
        items = [raw] if single else raw
        if not items:
            raise invalid("is an empty list; send at least one input", "inputs")
        if len(items) > max_inputs:
            raise RequestError(413, f"{len(items)} inputs in one request, more than the limit of {max_inputs}",
                               "inputs")
        check = INPUT_KINDS[self.inputs][0]
        fields = ["inputs" if single else f"inputs[{k}]" for k in range(len(items))]
        inputs = [check(item, where) for item, where in zip(items, fields)]
        options = {o.name: o.parse(data[o.name]) if o.name in data else o.default for o in self.options}
        return Parsed(inputs, fields, single, options)

    def schema(self, max_inputs: int) -> dict[str, Any]:
        one = INPUT_KINDS[self.inputs][1]
        return {"type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {"inputs": {"description": "one input, or a list of them (answered with a list)",
                                          "oneOf": [one, {"type": "array", "items": one, "minItems": 1,
                                                          "maxItems": max_inputs}]},
                               **{o.name: o.schema() for o in self.options}}}


BODIES: dict[str, Body] = {
    "embed": Body("text", (Option("normalize", bool, True, "L2-normalise each vector"),
                           Option("pooling", str, "mean", "mean over the tokens, the final [CLS] vector, or "
                                  "BERT's tanh pooler", choices=("mean", "cls", "pooler")), TRUNCATE),
                  "Sentence vectors: a list of vectors, one per input (as text-embeddings-inference)",
                  {"inputs": ["A man plays a guitar.", "Someone makes music."], "normalize": True}),
    "classify": Body("pair", (TRUNCATE,), "The label of a text or text pair, with every label's score",
                     {"inputs": [{"text": "A man plays a guitar.", "text_pair": "Someone makes music."}]}),
    "tag": Body("text", (TRUNCATE,), "Entities of a text, with character offsets into it",
                {"inputs": "Alice lives in Paris ."}),
    "qa": Body("qa", (Option("max_answer_length", int, 30, "longest answer, in pieces", min=1, max=512), TRUNCATE),
               "The answer span of a question in a context (long contexts are read in overlapping windows)",
               {"inputs": {"question": "Where does Alice live?", "context": "Alice lives in Paris."}}),
    "choice": Body("choice", (TRUNCATE,), "The likeliest ending of a context among its endings, with every ending's "
                   "score", {"inputs": {"context": "Alice lives in Paris.", "endings": ["She likes the city.",
                                                                                      "The river runs uphill."]}}),
    "fill-mask": Body("pair", (Option("top_k", int, 5, "guesses per [MASK]", min=1, max=1000), TRUNCATE),
                      "The masked-LM head's guesses for each [MASK] of a text",
                      {"inputs": "The capital of France is [MASK]."}),
    "attention": Body("pair", (Option("layer", int, None, "only this layer (from 0)", min=0, nullable=True),
                               Option("head", int, None, "only this head (from 0)", min=0, nullable=True),
                               TRUNCATE),
                      "Attention probabilities per layer and head: attention[layer][head][from][to]",
                      {"inputs": {"text": "The cat sat on the mat.", "text_pair": "It was tired."}, "layer": 0}),
    "tokenize": Body("pair", (TRUNCATE,), "Word pieces, ids, token types and character offsets",
                     {"inputs": "Tokenization isn't hard."}),
}
