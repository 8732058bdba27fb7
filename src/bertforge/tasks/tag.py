"""Token tagging (NER): a label per word, predicted at its first piece; long sentences split into
overlapping windows of whole words and stitched back; entity precision/recall/F1 (seqeval)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertforge import metrics
from bertforge.constants import IGNORE_INDEX
from bertforge.data import columnar, readers
from bertforge.data.examples import TaggedSentence
from bertforge.data.peoples_daily import TOKEN as PD_TOKEN
from bertforge.data.peoples_daily import read_peoples_daily
from bertforge.errors import DataFormatError
from bertforge.io.jsonl import read_jsonl
from bertforge.model.registry import TOKEN
from bertforge.tasks.base import Task, id2label
from bertforge.tasks.features import Feature, check_max_length, max_context
from bertforge.tokenization import BertTokenizer

logger = logging.getLogger(__name__)


@dataclass
class TagWindow(Feature):
    """A window of whole words of one sentence; ``label`` scores the first piece of each word."""

    word_ids: list[int | None]  # (T,) the sentence's word index of each piece; None on specials
    max_context: list[bool]  # (T,) True on the first piece of each word predicted from this window
    num_words: int  # words in the whole sentence


def _word_windows(counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) of at most ``budget`` pieces, consecutive ones sharing <= ``stride``.

    A word longer than ``budget`` gets a window of its own (its pieces are then cut by the caller).
    Each window ends further right than the one before, so the windows always finish.
    """
    n = len(counts)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and used + counts[end] <= budget:
            used += counts[end]
            end += 1
        end = max(end, start + 1) if n else 0
        windows.append((start, end))
        if end >= n:
            return windows
        nxt, overlap = end, 0  # step back over whole words while they fit in `stride` pieces
        while nxt - 1 > start and overlap + counts[nxt - 1] <= stride:
            nxt -= 1
            overlap += counts[nxt]
        while nxt < end and overlap + counts[end] > budget:  # the next window must reach word `end`
            overlap -= counts[nxt]
            nxt += 1
        start = nxt


def encode_tagged(tokenizer: BertTokenizer, sentences: Sequence[TaggedSentence],
                  label2id: Mapping[str, int] | None, max_length: int, stride: int) -> list[TagWindow]:
    """Windows of whole words with the tag id on each word's FIRST piece, IGNORE_INDEX elsewhere.

    Each word is tokenized alone (``piece_ids``; for BERT's whitespace/punctuation pre-tokenizer
    that equals its pieces in context). A word with no pieces at all (a lone control or
    zero-width character, which the normalizer deletes) becomes one ``[UNK]`` piece, so it still
    has a position to predict from. A sentence of more than ``max_length - 2`` pieces is split
    into windows of whole words overlapping by at most ``stride`` pieces; each word is predicted
    from the window where it has the most context on its shorter side (Google's rule,
    ``max_context``). Only a single word longer than ``max_length - 2`` pieces is cut (logged).
    """
    budget = max_length - 2
    check_max_length(max_length, 2)
    if not 0 <= stride < budget:
        raise ValueError(f"stride must be in [0, max_length - 2) = [0, {budget}), got {stride}")
    flat = tokenizer.piece_ids([w for s in sentences for w in s.words])
    flat = [p or [tokenizer.unk_token_id] for p in flat]
    windows: list[TagWindow] = []
    cut_words, k = 0, 0
    for index, sentence in enumerate(sentences):
        pieces, k = flat[k:k + len(sentence.words)], k + len(sentence.words)
        tag_ids = _tag_ids(sentence, label2id)
        cut_words += sum(len(p) > budget for p in pieces)
        pieces = [p[:budget] for p in pieces]
        starts = np.cumsum([0] + [len(p) for p in pieces])  # (W + 1,) each word's first piece
        spans = _word_windows([len(p) for p in pieces], budget, stride)
        best = max_context([(starts[s], starts[e] - starts[s]) for s, e in spans],
                           [(starts[w], starts[w + 1] - 1) for w in range(len(pieces))])
        for w_index, (start, end) in enumerate(spans):
            ids, word_ids = [tokenizer.cls_token_id], [None]
            chosen = [False]
            labels = None if tag_ids is None else [IGNORE_INDEX]
            for w in range(start, end):
                chosen += [best[w] == w_index] + [False] * (len(pieces[w]) - 1)
                if labels is not None:
                    labels += [tag_ids[w]] + [IGNORE_INDEX] * (len(pieces[w]) - 1)
                ids += pieces[w]
                word_ids += [w] * len(pieces[w])
            ids.append(tokenizer.sep_token_id)
            word_ids.append(None)
            chosen.append(False)
            if labels is not None:
                labels.append(IGNORE_INDEX)
            windows.append(TagWindow(ids, [0] * len(ids), labels, index, word_ids, chosen, len(sentence.words)))
    if cut_words:
        logger.warning("%d words longer than max_length - 2 = %d pieces were cut to fit one window "
                       "(each still gets its tag from its first piece)", cut_words, budget)
    return windows


def _tag_ids(sentence: TaggedSentence, label2id: Mapping[str, int] | None) -> list[int] | None:
    if sentence.tags is None:
        return None
    if len(sentence.tags) != len(sentence.words):
        raise ValueError(f"sentence {sentence.id}: {len(sentence.tags)} tags for {len(sentence.words)} words")
    if label2id is None:
        raise ValueError(f"sentence {sentence.id} has tags but no label2id was given")
    unknown = sorted({t for t in sentence.tags if t not in label2id})
    if unknown:
        raise ValueError(f"sentence {sentence.id}: tags {unknown} are not in label2id "
                         f"({', '.join(map(repr, label2id))})")
    return [label2id[t] for t in sentence.tags]


def stitch_word_scores(windows: Sequence[TagWindow], scores: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Per sentence, in order, the score row of each word: its first piece's (num_labels,) logits (or
    its () id) in the window where it has the most context. ``scores[i]`` is window i's (T, num_labels)
    logits or (T,) ids and may be longer than the window (a padded batch row); the padding is ignored."""
    if len(scores) != len(windows):
        raise ValueError(f"{len(scores)} score arrays for {len(windows)} windows")
    rows: dict[int, list[np.ndarray | None]] = {}
    for i, (window, score) in enumerate(zip(windows, scores)):
        score = np.asarray(score)
        if score.ndim not in (1, 2) or score.shape[0] < len(window.input_ids):
            raise ValueError(f"window {i}: scores of shape {score.shape} do not cover its "
                             f"{len(window.input_ids)} tokens; expected (T, num_labels) logits or (T,) ids")
        out = rows.setdefault(window.example_index, [None] * window.num_words)
        for t, chosen in enumerate(window.max_context):
            if chosen:
                word = window.word_ids[t]
                if out[word] is not None:
                    raise ValueError(f"sentence {window.example_index}: word {word} is max-context in two windows")
                out[word] = score[t]
    result = []
    for index in range(max(rows, default=-1) + 1):
        if index not in rows:
            raise ValueError(f"no window of sentence {index}: windows must cover sentences 0..{max(rows)}")
        missing = [w for w, row in enumerate(rows[index]) if row is None]
        if missing:
            raise ValueError(f"sentence {index}: words {missing} got no tag (a window is missing)")
        result.append(rows[index])
    return result


def stitch_tags(windows: Sequence[TagWindow], scores: Sequence[np.ndarray],
                id2label: Mapping[int, str] | Sequence[str]) -> list[list[str]]:
    """One tag per word per sentence, in order, from each window's (T, num_labels) logits or (T,) ids.

    Each word takes the prediction at its first piece in its max-context window. ``scores[i]``
    may be longer than window i (a padded batch row); the padding is ignored.
    """
    return [[id2label[int(row.argmax() if row.ndim else row)] for row in sentence]
            for sentence in stitch_word_scores(windows, scores)]


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the words a plain-text line is tagged as: its whitespace-separated
    words, or, in a line without spaces (Chinese), each of its characters."""
    if " " in text.strip():
        return [m.span() for m in re.finditer(r"\S+", text)]
    start = len(text) - len(text.lstrip())
    return [(start + i, start + i + 1) for i in range(len(text.strip()))]


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of each entity in BIO, IOB1 or IOBES tags, as conlleval reads them:
    B-/S- start an entity, I-/E- of another type than the one before start one too, E-/S- end it."""
    entities: list[tuple[str, int, int]] = []
    current: list = []  # [type, first, last] of the open entity
    for i, tag in enumerate(tags):
        prefix, kind = (tag[:1], tag[2:]) if len(tag) > 2 and tag[1] == "-" else ("O", "")
        if prefix == "O" or prefix in "BS" or (current and current[0] != kind):
            if current:
                entities.append(tuple(current))
            current = [kind, i, i] if prefix != "O" else []
        else:
            current = current or [kind, i, i]
            current[2] = i
        if prefix in "ES" and current:
            entities.append(tuple(current))
            current = []
    if current:
        entities.append(tuple(current))
    return entities


def read_tagged_jsonl(path: str | Path, encoding: str = "utf-8") -> list[TaggedSentence]:
    """JSON lines with a ``words`` list and a ``tags`` list of the same length, or columnar data (Parquet, Arrow,
    datasets) with those list columns, or Hugging Face's ``tokens`` and ``ner_tags`` (ClassLabel names)."""
    sentences = []
    for lineno, record in _tagged_rows(path) if columnar.detect(path) else read_jsonl(path, encoding):
        words, tags = (Task.field(record, name, path, lineno, list) for name in ("words", "tags"))
        if len(words) != len(tags):
            raise DataFormatError(f"{len(words)} words but {len(tags)} tags", path=path, line=lineno, field="tags")
        sentences.append(TaggedSentence([str(w) for w in words], [str(t) for t in tags], f"line-{lineno}"))
    if not sentences:
        raise DataFormatError("no sentences in file", path=path)
    return sentences


def _tagged_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Rows of columnar data as tagging records: its ``words`` (else ``tokens``) and ``tags`` (else ``ner_tags``)."""
    table = columnar.open_columnar(path)
    words = "words" if "words" in table.columns or "tokens" not in table.columns else "tokens"
    tags = "tags" if "tags" in table.columns or "ner_tags" not in table.columns else "ner_tags"
    for row, record in table.rows([words, tags], hint="tagging reads list columns words and tags (or Hugging "
                                                       "Face's tokens and ner_tags)"):
        yield row, {"words": record[words], "tags": record[tags]}


class TagTask(Task):
    name, selection_metric = "tag", "f1"
    head_kind = TOKEN
    input_fields = ("words",)

    def read(self, path, opts):
        path = columnar.source(path)
        fmt = opts.format if opts.format != "auto" else _sniff_format(path, opts.encoding)
        if columnar.detect(path) and fmt != "jsonl":
            raise DataFormatError(f"format {fmt!r} reads text files, and this is Parquet or Arrow data", path=path,
                                  hint="use the format auto or jsonl")
        if fmt == "peoples-daily":
            return read_peoples_daily(path, scheme=opts.scheme, encoding=opts.encoding)
        if fmt == "conll":
            return readers.read_conll(path, scheme=opts.scheme, encoding=opts.encoding)
        if fmt == "jsonl":
            sentences = read_tagged_jsonl(path, opts.encoding)
            if opts.scheme == "IOBES":
                for s in sentences:
                    s.tags = readers.bio_to_iobes(readers.to_bio(s.tags))
            return sentences
        raise DataFormatError(f"format {fmt!r} is not a tagging format", path=path,
                              hint="use conll, peoples-daily or jsonl")

    def input_columns(self, opts):
        return {"words", "tokens"}

    def input_record(self, record, opts):
        """Hugging Face's ``tokens`` column when there is no ``words`` one, as training reads it."""
        return {**record, "words": record["tokens"]} if "words" not in record and "tokens" in record else record

    def input_example(self, record, line, key, path, lineno, opts):
        if record is not None:
            words = self.field(record, "words", path, lineno, list)
            return TaggedSentence([str(w) for w in words], None, key)
        return TaggedSentence([line[s:e] for s, e in word_spans(line)], None, key)  # CJK: characters

    def label_names(self, examples):
        return sorted({t for e in examples if e.tags for t in e.tags})

    def encode(self, tokenizer, examples, label2id, opts):
        return encode_tagged(tokenizer, examples, label2id, opts.max_length, stride=opts.max_length // 4)

    def loss_items(self, batch):
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def decode(self, examples, feats, outputs, settings, opts):
        return stitch_tags(feats, outputs, id2label(settings))

    def score(self, examples, predictions, labels):
        result = metrics.entity_metrics([e.tags for e in examples], predictions, scheme=scheme_of(labels))
        result.pop("per_type", None)
        return result

    def to_json(self, prediction, output=None):
        return {"tags": prediction}


def scheme_of(labels: Sequence[str]) -> str:
    """The tagging scheme of a label set: IOBES if it has E- or S- tags, else BIO."""
    return "IOBES" if labels and any(t.startswith(("E-", "S-")) for t in labels) else "BIO"


def _sniff_format(path: Path, encoding: str) -> str:
    if columnar.detect(path) or path.suffix in (".jsonl", ".json"):
        return "jsonl"
    with open(path, encoding=encoding, errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    tokens = first.split()
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "peoples-daily" if tokens and all(PD_TOKEN.fullmatch(t) for t in tokens) else "conll"
