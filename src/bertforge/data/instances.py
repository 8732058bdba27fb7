"""Pre-training instances (``[CLS] A [SEP] B [SEP]`` + next-sentence label), as Google makes them.

Follows ``create_training_instances`` / ``create_instances_from_document`` / ``truncate_seq_pair``
of Google's ``create_pretraining_data.py`` rule for rule; masking lives in
:mod:`bertforge.data.masking` (applied offline with ``mask_tokens`` or per batch with
``mask_batch``). Everything works on token ids: a document is a list of sentences, a sentence a
1-D int array of WordPiece ids without specials. Randomness comes from a
``numpy.random.Generator``: same seed, same instances. Python's ``random`` streams are not
reproduced bit for bit, only the rules and distributions (``rng.random()`` -> ``rng.random()``,
``rng.randint(a, b)`` -> ``rng.integers(a, b + 1)``).

``nsp=False`` (the ablation "No NSP", RoBERTa's FULL-SENTENCES) packs contiguous text instead,
see :func:`pack_documents`.

Ids are only copied, cut and concatenated here, never compared, so a caller may carry one bit per piece in
the ids' high bits through instance creation: ``prepare`` carries "continues the previous piece's word"
(``prepare.CONTINUES_BIT``) that way, and takes it off before writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertforge.data.masking import SpecialIds

Document = list[np.ndarray]  # sentences, each a 1-D array of token ids


@dataclass
class Instance:
    """One pre-training sequence before masking.

    ``tokens`` = ``[CLS] A [SEP] B [SEP]`` (NSP) or ``[CLS] text [SEP]`` (no NSP);
    ``segment_ids`` = 0 up to and including the first ``[SEP]``, 1 after it (all 0 without NSP);
    ``is_random_next`` = B was drawn from another document (the NSP label "NotNext").
    """

    tokens: np.ndarray  # (T,) int32, T <= max_seq_length
    segment_ids: np.ndarray  # (T,) int32
    is_random_next: bool


def _check_max_seq_length(max_seq_length: int) -> None:
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length must be >= 5 ([CLS] a [SEP] b [SEP]), "
                         f"got {max_seq_length}")


def truncate_seq_pair(tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Trim a pair to ``len(a) + len(b) <= max_num_tokens``; returns the trimmed views.

    Google's loop removes one token at a time from the longer side (``b`` on ties), from the
    front with probability 0.5, else from the back. Which side loses each token does not depend
    on the coin flips, so the per-side counts are computed directly and the number taken from the
    front of each side is Binomial(count, 0.5): the same distribution, without a loop per token.
    """
    la, lb = len(tokens_a), len(tokens_b)
    excess = la + lb - max_num_tokens
    if excess <= 0:
        return tokens_a, tokens_b
    if max_num_tokens < 2 or la == 0 or lb == 0:
        raise ValueError(f"cannot truncate a pair of lengths ({la}, {lb}) to {max_num_tokens} "
                         f"tokens and keep both sides non-empty")
    # The longer side shrinks to the shorter one's length, then the two alternate, b first.
    gap = abs(la - lb)
    first = min(excess, gap)
    rest = excess - first
    cut_a = (first if la > lb else 0) + rest // 2
    cut_b = (first if la <= lb else 0) + (rest - rest // 2)
    front_a = int(rng.binomial(cut_a, 0.5)) if cut_a else 0
    front_b = int(rng.binomial(cut_b, 0.5)) if cut_b else 0
    return (tokens_a[front_a:la - (cut_a - front_a)], tokens_b[front_b:lb - (cut_b - front_b)])


def _target_seq_length(max_num_tokens: int, short_seq_prob: float,
                       rng: np.random.Generator) -> int:
    # target_seq_length = max_num_tokens
    # if rng.random() < short_seq_prob: target_seq_length = rng.randint(2, max_num_tokens)
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_num_tokens + 1))
    return max_num_tokens


def _build_pair(tokens_a: np.ndarray, tokens_b: np.ndarray, special_ids: SpecialIds,
                is_random_next: bool) -> Instance:
    la, lb = len(tokens_a), len(tokens_b)
    tokens = np.empty(la + lb + 3, dtype=np.int32)
    tokens[0] = special_ids.cls
    tokens[1:la + 1] = tokens_a
    tokens[la + 1] = special_ids.sep
    tokens[la + 2:-1] = tokens_b
    tokens[-1] = special_ids.sep
    segment_ids = np.zeros(la + lb + 3, dtype=np.int32)
    segment_ids[la + 2:] = 1
    return Instance(tokens, segment_ids, is_random_next)


def create_instances_from_document(
    documents: Sequence[Document],
    doc_index: int,
    special_ids: SpecialIds,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    rng: np.random.Generator | None = None,
    nsp: bool = True,
    random_next: bool = True,
) -> list[Instance]:
    """Instances from ``documents[doc_index]``, Google's ``create_instances_from_document``.

    Sentences are accumulated until a target length is reached (``max_seq_length - 3``, or with
    probability ``short_seq_prob`` a random one in [2, max]); the chunk is split at a random
    sentence boundary into A and B; half of the time (always when the chunk is one sentence) B is
    replaced by text from a random other document and the unused sentences are put back.
    With ``nsp=False`` the document alone is packed by :func:`pack_documents`. With
    ``random_next=False`` (ALBERT's sentence-order prediction) B is always the real continuation, except
    for a one-sentence chunk, which still takes a random B (ALBERT's rule); the order is swapped later,
    per batch (``objectives/mlm.py``).
    """
    _check_max_seq_length(max_seq_length)
    if rng is None:
        raise ValueError("rng (a numpy.random.Generator) is required")
    document = documents[doc_index]
    if not nsp:
        return pack_documents([document], max_seq_length, special_ids)
    if len(documents) < 2:
        raise ValueError("next-sentence prediction needs at least 2 documents to draw random "
                         "B segments from; pass nsp=False (--no-nsp) to pack text without NSP")
    if any(len(s) == 0 for s in document):
        raise ValueError(f"document {doc_index} has an empty sentence; drop empty sentences first")

    max_num_tokens = max_seq_length - 3  # account for [CLS], [SEP], [SEP]
    target_seq_length = _target_seq_length(max_num_tokens, short_seq_prob, rng)

    instances: list[Instance] = []
    current_chunk: list[np.ndarray] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            # a_end: how many sentences of the chunk go into A.
            a_end = 1
            if len(current_chunk) >= 2:
                a_end = int(rng.integers(1, len(current_chunk)))  # randint(1, len(chunk) - 1)
            tokens_a = np.concatenate(current_chunk[:a_end])

            if len(current_chunk) == 1 or (random_next and rng.random() < 0.5):
                is_random_next = True
                target_b_length = target_seq_length - len(tokens_a)
                # Try to pick a different document; after 10 misses, use what was drawn.
                for _ in range(10):
                    random_document_index = int(rng.integers(0, len(documents)))
                    if random_document_index != doc_index:
                        break
                random_document = documents[random_document_index]
                random_start = int(rng.integers(0, len(random_document)))
                pieces, b_length = [], 0
                for j in range(random_start, len(random_document)):
                    pieces.append(random_document[j])
                    b_length += len(random_document[j])
                    if b_length >= target_b_length:
                        break
                tokens_b = np.concatenate(pieces)
                # The sentences of the chunk after A were not used: "put them back".
                num_unused_segments = len(current_chunk) - a_end
                i -= num_unused_segments
            else:
                is_random_next = False
                tokens_b = np.concatenate(current_chunk[a_end:])

            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            assert len(tokens_a) >= 1 and len(tokens_b) >= 1
            instances.append(_build_pair(tokens_a, tokens_b, special_ids, is_random_next))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def pack_documents(
    documents: Sequence[Document],
    max_seq_length: int,
    special_ids: SpecialIds,
    *,
    whole_sentences: bool = False,
    separate_documents: bool = True,
) -> list[Instance]:
    """Pack contiguous text, in and across documents, into ``[CLS] text [SEP]`` (no NSP).

    Text is read in order; between two documents a ``[SEP]`` is inserted when
    ``separate_documents`` (never as the first token after ``[CLS]``).
    ``whole_sentences=False``: the stream is cut every ``max_seq_length - 2`` tokens, so every
    instance but the last is exactly ``max_seq_length`` long (sentences split at the cut).
    ``whole_sentences=True``: RoBERTa's FULL-SENTENCES, instances hold whole sentences only, as
    many as fit; a sentence longer than ``max_seq_length - 2`` is cut into full pieces, its
    tail starting the next instance.
    Segment ids are all 0 and ``is_random_next`` is False.
    """
    _check_max_seq_length(max_seq_length)
    budget = max_seq_length - 2  # [CLS] ... [SEP]
    sep = np.array([special_ids.sep], dtype=np.int32)
    out: list[Instance] = []
    buf: list[np.ndarray] = []
    n = 0

    def flush() -> None:
        nonlocal buf, n
        if n:
            tokens = np.concatenate([[special_ids.cls], *buf, [special_ids.sep]]).astype(np.int32)
            out.append(Instance(tokens, np.zeros(len(tokens), dtype=np.int32), False))
        buf, n = [], 0

    for d, document in enumerate(documents):
        if d and separate_documents and n:
            buf.append(sep)
            n += 1
            if n == budget:
                flush()
        for sentence in document:
            sentence = np.asarray(sentence, dtype=np.int32)
            if whole_sentences and n + len(sentence) > budget:
                flush()  # the sentence does not fit: start a new instance with it
            while len(sentence):
                take = min(budget - n, len(sentence))
                buf.append(sentence[:take])
                n += take
                sentence = sentence[take:]
                if n == budget:
                    flush()
    flush()
    return out


def create_instances(
    documents: Sequence[Document],
    special_ids: SpecialIds,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 10,
    rng: np.random.Generator | None = None,
    nsp: bool = True,
    random_next: bool = True,
) -> list[Instance]:
    """All instances of a corpus, Google's ``create_training_instances`` minus the masking.

    Empty sentences and documents are dropped, the documents shuffled, every document turned into
    instances ``dupe_factor`` times (each pass draws new split points and random B segments), and
    the instances shuffled. With ``nsp=False`` each pass packs the documents, in a fresh shuffled
    order, with :func:`pack_documents`.
    """
    _check_max_seq_length(max_seq_length)
    if rng is None:
        raise ValueError("rng (a numpy.random.Generator) is required")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")

    docs: list[Document] = []
    for document in documents:
        sentences = [np.asarray(s, dtype=np.int32) for s in document]
        sentences = [s for s in sentences if s.size]
        if sentences:
            docs.append(sentences)
    if not docs:
        raise ValueError("the corpus has no tokens")
    if nsp and (len(docs) < 2 or all(len(d) < 2 for d in docs)):
        raise ValueError(
            f"next-sentence prediction needs at least 2 documents and one with 2 or more "
            f"sentences; got {len(docs)} document(s) with at most "
            f"{max(len(d) for d in docs)} sentence(s). Split documents into sentences, or pass "
            f"nsp=False (--no-nsp) to pack text without NSP")

    instances: list[Instance] = []
    if nsp:
        docs = [docs[i] for i in rng.permutation(len(docs))]  # rng.shuffle(all_documents)
        for _ in range(dupe_factor):
            for doc_index in range(len(docs)):
                instances.extend(create_instances_from_document(
                    docs, doc_index, special_ids, max_seq_length, short_seq_prob, rng, random_next=random_next))
    else:
        for _ in range(dupe_factor):
            order = rng.permutation(len(docs))
            instances.extend(pack_documents([docs[i] for i in order], max_seq_length, special_ids))
    order = rng.permutation(len(instances))  # rng.shuffle(instances)
    return [instances[i] for i in order]
