"""Word boundaries for whole-word masking: for each piece, whether it continues the word of the piece before.

BERT's Chinese vocabulary makes every CJK character its own piece, so the ``##`` rule of English
whole-word masking never groups Chinese pieces. Chinese-BERT-wwm segments the text into words and masks a
word's characters together; here the corpus is segmented once, when it is prepared
(``PrepareSettings.segment_words``), and each stored piece gets one bit, "continues the previous piece's
word": true for a ``##`` piece, and for a piece inside the same segmented word as the piece before it.

* A sentence with CJK characters is segmented by jieba (the ``zh`` extra), loaded on first need, so a
  corpus without Chinese text never needs it.
* People's Daily is segmented already: its reader hands each sentence on as a :class:`SegmentedSentence`
  that carries the corpus's own word starts, and jieba is not used for it.
* A sentence without CJK characters keeps the ``##`` rule exactly, so English and mixed corpora mask as
  before.

Pieces are matched to words by their character offsets in the sentence (the tokenizer's offsets), so a
segmented word that the tokenizer cuts into several pre-tokens ("1998年" -> 1998, 年) is one word, and a
``##`` piece always continues its word whatever the segmenter said.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Sequence

import numpy as np

from bertforge.errors import UsageError

SEGMENTER = "jieba"
INSTALL_HINT = "pip install 'bertforge[zh]' (or pip install jieba==0.42.1)"

# BERT's "Chinese character" ranges (CJK Unified Ideographs and their extensions, compatibility ideographs),
# the characters its tokenizer makes single pieces of.
_CJK = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
                  "\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f]")


class SegmentedSentence(str):
    """A sentence that carries its own segmentation (People's Daily): ``word_starts`` are the character
    offsets where its words start, ascending, 0 first."""

    word_starts: tuple[int, ...]

    def __new__(cls, text: str, word_starts: Sequence[int]) -> SegmentedSentence:
        self = super().__new__(cls, text)
        self.word_starts = tuple(word_starts)
        return self

    def __reduce__(self):  # pickled to the preparation workers with its words
        return (SegmentedSentence, (str(self), self.word_starts))


def has_cjk(text: str) -> bool:
    """True if ``text`` holds a character BERT treats as Chinese (what jieba would be needed for)."""
    return _CJK.search(text) is not None


def segmenter_installed() -> bool:
    return importlib.util.find_spec(SEGMENTER) is not None


def segmenter_version() -> str:
    """``"jieba 0.42.1"``, or ``"jieba (not installed)"``: recorded with a prepared corpus, so one segmented
    by another version is not reused."""
    if not segmenter_installed():
        return f"{SEGMENTER} (not installed)"
    try:
        return f"{SEGMENTER} {importlib.metadata.version(SEGMENTER)}"
    except importlib.metadata.PackageNotFoundError:  # importable without package metadata (a source tree)
        return f"{SEGMENTER} (unknown version)"


def require_segmenter(where: str) -> None:
    """Raise the one clear error when Chinese text must be segmented and jieba is missing."""
    if not segmenter_installed():
        raise UsageError(f"{where} has Chinese text, and whole-word masking segments it into words with the "
                         f"{SEGMENTER} package, which is not installed", hint=INSTALL_HINT)


def split_segmented(words: Sequence[str], text: str, sentences: Sequence[str]) -> list[str]:
    """``sentences`` (split from ``text``, the ``words`` joined with optional single spaces) as
    :class:`SegmentedSentence` s with the words' starts; a sentence not found in ``text`` stays plain."""
    starts, pos = [], 0
    for word in words:
        pos = text.find(word, pos)
        if pos < 0:  # not the words of this text: leave the sentences to the segmenter
            return list(sentences)
        starts.append(pos)
        pos += len(word)
    out: list[str] = []
    pos = 0
    for sentence in sentences:
        at = text.find(sentence, pos)
        if at < 0:
            out.append(sentence)
            continue
        end = at + len(sentence)
        inside = [s - at for s in starts if at < s < end]
        out.append(SegmentedSentence(sentence, [0, *inside]))
        pos = end
    return out


class Segmenter:
    """jieba, loaded on first need in this process (its dictionary takes about a second to load)."""

    def __init__(self) -> None:
        self._jieba = None
        self.used = {"jieba": 0, "corpus": 0}  # sentences segmented by jieba, and by the corpus itself

    def word_starts(self, sentence: str) -> tuple[int, ...] | None:
        """Character offsets where the words of ``sentence`` start; None when the ``##`` rule alone applies
        (no Chinese text, and no segmentation of its own)."""
        if isinstance(sentence, SegmentedSentence):
            self.used["corpus"] += 1
            return sentence.word_starts
        if not has_cjk(sentence):
            return None
        self.used["jieba"] += 1
        starts, pos = [], 0
        for word in self._tokenizer().cut(str(sentence), HMM=True):
            starts.append(pos)
            pos += len(word)
        if pos != len(sentence):  # jieba returns every character; if not, trust only the ## rule
            return None
        return tuple(starts)

    def _tokenizer(self):
        if self._jieba is None:
            require_segmenter("the corpus")
            import jieba

            # Build the prefix dictionary in memory: jieba's own initialize() logs to stderr and writes a
            # cache file into the system's temporary directory.
            tokenizer = jieba.Tokenizer()
            tokenizer.FREQ, tokenizer.total = tokenizer.gen_pfdict(tokenizer.get_dict_file())
            tokenizer.initialized = True
            self._jieba = tokenizer
        return self._jieba


def continuation_bits(tokenizer, sentences: Sequence[str], is_subword: np.ndarray, segmenter: Segmenter
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each sentence, its piece ids (int32) and whether each piece continues the previous piece's word
    (bool): a ``##`` piece does, and so does a piece in the same segmented word as the piece before."""
    encoded = tokenizer(list(sentences), max_length=sys.maxsize, truncation=False, padding=False,
                        return_offsets=True, return_tensors=None)
    out = []
    for sentence, ids, offsets in zip(sentences, encoded["input_ids"], encoded["offset_mapping"]):
        ids = np.asarray(ids[1:-1], dtype=np.int32)  # without [CLS] and [SEP]
        continues = is_subword[ids].copy() if ids.size else np.zeros(0, dtype=bool)
        starts = segmenter.word_starts(sentence)
        if starts is not None and ids.size > 1:
            piece_start = np.asarray([o[0] for o in offsets[1:-1]], dtype=np.int64)  # (n,) first character
            word = np.searchsorted(np.asarray(starts, dtype=np.int64), piece_start, side="right")  # (n,)
            continues[1:] |= word[1:] == word[:-1]
        out.append((ids, continues))
    return out
