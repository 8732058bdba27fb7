"""The word cache assembles exactly the ids that tokenizing each whole text gives."""

import numpy as np
import pytest

from bertforge.data.word_cache import WordPieceCache
from bertforge.vocab import train_vocab

TEXTS = [
    "The cat sat on the mat.",
    "  leading and trailing spaces  ",
    "double  spaces,\ttabs\tand\u00a0no-break\u3000ideographic spaces",
    "",
    " ",
    "Crème brûlée, naïve café — ÀÉÎ",
    "北京是中国的首都。我们去了人民大会堂！",
    "mixed北京text and 中文words",
    "a literal [MASK] token and foo[MASK]bar",
    "control\x00chars\x07 here\u200b",
    "emoji 🙂 and 👍🏽 done",
    "x" * 150 + " after a word over the WordPiece length limit",
    "unknownwordsxyzqq zzzzyyy",
    "The cat sat on the mat.",  # repeated: served from the cache
]


@pytest.fixture(scope="module", params=[True, False], ids=["lowercase", "cased"])
def tokenizer(request):
    text = " ".join(TEXTS[:3] + TEXTS[5:8]) * 5 + " the cat sat on a mat with two dogs and three birds"
    return train_vocab([text], 200, lowercase=request.param)


def expected(tokenizer, texts):
    return [np.asarray(ids, dtype=np.int32) for ids in tokenizer.piece_ids(texts)]


def test_ids_equal_tokenizing_each_text(tokenizer):
    cache = WordPieceCache(tokenizer)
    for batch in (TEXTS, TEXTS[::-1], TEXTS[3:5]):  # later calls mix cached and new words
        got = cache.piece_arrays(batch)
        assert len(got) == len(batch)
        for text, a, b in zip(batch, got, expected(tokenizer, batch)):
            assert a.dtype == np.int32 and a.tolist() == b.tolist(), text


def test_cache_is_bounded_and_stays_exact(tokenizer):
    cache = WordPieceCache(tokenizer, max_words=5)
    for i in range(0, len(TEXTS), 3):
        batch = TEXTS[i:i + 3]
        assert [a.tolist() for a in cache.piece_arrays(batch)] == [b.tolist() for b in expected(tokenizer, batch)]
        assert len(cache.index) <= 5 + sum(len(t.split(" ")) for t in batch)
    assert cache.piece_arrays([]) == []
