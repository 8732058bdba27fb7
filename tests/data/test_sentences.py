import time

import pytest

from bertforge.data.sentences import split_sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It rained. We stayed in! Did you? Yes.",
         ["It rained.", "We stayed in!", "Did you?", "Yes."]),
        # abbreviations: titles, places, Latin, dotted forms
        ("Mr. Smith met Dr. Jones at St. Paul's. They left.",
         ["Mr. Smith met Dr. Jones at St. Paul's.", "They left."]),
        ("Fruit, e.g. Apples and pears, i.e. Pomes, etc. Are sold in the U.S. Army stores.",
         ["Fruit, e.g. Apples and pears, i.e. Pomes, etc. Are sold in the U.S. Army stores."]),
        ("Mrs. Brown and Prof. Green, Ph.D. Arrived at 5 p.m. Then they ate.",
         ["Mrs. Brown and Prof. Green, Ph.D. Arrived at 5 p.m. Then they ate."]),
        # capital initials
        ("J. R. R. Tolkien wrote it. C. S. Lewis read it.",
         ["J. R. R. Tolkien wrote it.", "C. S. Lewis read it."]),
        # decimals and numbers
        ("Pi is 3.14 or so. In 1999. The end.", ["Pi is 3.14 or so.", "In 1999.", "The end."]),
        # numbering abbreviations hold only before a number
        ("See No. 5 on p. 12 from Jan. 1998. The answer is no. Then we left.",
         ["See No. 5 on p. 12 from Jan. 1998.", "The answer is no.", "Then we left."]),
        # circa, but a unit letter is not an abbreviation
        ("Built c. AD 600. It is 15 °C. Warm.", ["Built c. AD 600.", "It is 15 °C.", "Warm."]),
        # ellipsis: mid-sentence before lower case, a boundary before a capital
        ("Well... maybe not. He paused... Then he left. Wait… What?",
         ["Well... maybe not.", "He paused...", "Then he left.", "Wait…", "What?"]),
        # closing quotes and brackets stay with their sentence; "?!" runs
        ('He said "Stop." Then he ran. (It was late.) Really?! "Why?" she asked.',
         ['He said "Stop."', "Then he ran.", "(It was late.)", "Really?!", '"Why?" she asked.']),
        # no split before lower case, digits do start a sentence
        ("Version 2. it continues. 3 people came.", ["Version 2. it continues.", "3 people came."]),
        ("", []),
        ("   \n\n  ", []),
    ],
)
def test_english(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我爱北京。你呢？真好！", ["我爱北京。", "你呢？", "真好！"]),
        ("真的吗？！当然。", ["真的吗？！", "当然。"]),
        ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
        ("「走吧。」『好！』（完。）最后", ["「走吧。」", "『好！』", "（完。）", "最后"]),
        ("没有句号的标题", ["没有句号的标题"]),
        # a comma, semicolon or ellipsis does not end a Chinese sentence
        ("一，二；三……四。", ["一，二；三……四。"]),
        ("中文句子。 English follows. 然后中文。", ["中文句子。", "English follows.", "然后中文。"]),
    ],
)
def test_chinese(text, expected):
    assert split_sentences(text) == expected


def test_paragraphs_and_whitespace():
    text = "First line\nwraps here. Second  \t sentence.\n\n  New paragraph without a stop\nNext."
    assert split_sentences(text) == [
        "First line wraps here.",
        "Second sentence.",
        "New paragraph without a stop Next.",  # a single newline is only whitespace
    ]
    assert split_sentences("A paragraph\n\nanother one") == ["A paragraph", "another one"]


def test_real_text_invariants(lee_text):
    """On real news text: nothing is lost, every sentence is stable under re-splitting, and the
    splits land where a reader would put them (counts checked against the known corpus)."""
    lines = lee_text.splitlines()
    sentences = [s for line in lines for s in split_sentences(line)]
    assert "".join(sentences).replace(" ", "") == "".join(lines).replace(" ", "").replace("\t", "")
    assert all(split_sentences(s) == [s] for s in sentences)
    assert len(sentences) == 2683  # Lee background corpus: 300 documents, ~9 sentences each
    assert not [s for s in sentences if s.split()[-1] in ("Mr.", "Dr.", "St.", "Mrs.")]
    # splitting is also fast: print the rate (not asserted, machines differ)
    text = lee_text * 5
    start = time.perf_counter()
    split_sentences(text)
    rate = len(text.encode()) / (time.perf_counter() - start) / 1e6
    print(f"split_sentences: {rate:.1f} MB/s of English news")


@pytest.fixture(scope="module")
def lee_text(fetched):
    path = fetched("gensim-data") / "lee_background.cor"
    return path.read_text(encoding="utf-8")
