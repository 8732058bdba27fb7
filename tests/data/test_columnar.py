"""Parquet, Arrow and datasets data as pre-training corpora (``data/columnar.py`` through ``read_documents`` and
``prepare``): the documents equal those of the same text in JSONL, whatever wrote the file; reading streams a batch
at a time; a missing column, a damaged file and a missing pyarrow are one clear error each."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from unavailable import require

pa = require("pyarrow")
pq = require("pyarrow.parquet")

from bertforge.cli import main  # noqa: E402
from bertforge.data import columnar  # noqa: E402
from bertforge.data.corpus import CorpusStats, detect_format, read_documents  # noqa: E402
from bertforge.errors import DataFormatError, Row, UsageError  # noqa: E402

TEXTS = ["One sentence here. And a second one!", "", "Third document, alone.", "Fourth. Fifth? Sixth.",
         "Les accents: café, naïve. 中文句子。第二句。"]


def read(source, **kwargs):
    stats = CorpusStats()
    return list(read_documents(source, stats=stats, **kwargs)), stats


def figures(stats: CorpusStats) -> tuple[int, int, int]:
    return stats.documents, stats.sentences, stats.empty_documents_skipped


@pytest.fixture
def datasets_lib():
    datasets = require("datasets")
    datasets.disable_progress_bars()
    return datasets


def written(tmp_path, datasets_lib) -> dict:
    """The same rows (a ``body`` text column and an ``id``) in every columnar form, and as JSONL."""
    rows = {"id": list(range(len(TEXTS))), "body": TEXTS}
    table = pa.table(rows)
    out = {"jsonl": tmp_path / "c.jsonl"}
    out["jsonl"].write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(TEXTS)))
    out["parquet"] = tmp_path / "c.parquet"
    pq.write_table(table, out["parquet"], row_group_size=2)  # three row groups
    out["arrow-file"] = tmp_path / "c.arrow"
    with pa.ipc.new_file(out["arrow-file"], table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    out["arrow-stream"] = tmp_path / "c.stream"  # no telling suffix: told by its first bytes
    with pa.ipc.new_stream(out["arrow-stream"], table.schema) as writer:
        writer.write_table(table)
    dataset = datasets_lib.Dataset.from_dict(rows)
    dataset.to_parquet(str(tmp_path / "hf.parquet"))
    out["datasets-parquet"] = tmp_path / "hf.parquet"
    dataset.save_to_disk(str(tmp_path / "folder"), num_shards=2)
    out["datasets-folder"] = tmp_path / "folder"
    out["dataset"] = datasets_lib.load_from_disk(str(tmp_path / "folder"))
    return out


KINDS = {"parquet": "parquet", "arrow-file": "arrow", "arrow-stream": "arrow", "datasets-parquet": "parquet",
         "datasets-folder": "arrow", "dataset": "arrow"}


def test_every_columnar_form_reads_the_documents_jsonl_gives(tmp_path, datasets_lib):
    files = written(tmp_path, datasets_lib)
    expected, expected_stats = read(files["jsonl"], text_field="body")
    assert len(expected) == 4 and figures(expected_stats) == (4, 9, 1)
    for name, kind in KINDS.items():
        assert detect_format(files[name]) == kind, name
        docs, stats = read(files[name], text_field="body")
        assert docs == expected, name
        assert figures(stats) == figures(expected_stats), name
        assert stats.bytes_read == sum(len(t.encode()) for t in TEXTS), name
        assert read(files[name], text_field="body", format=kind)[0] == expected, name
    mixed, stats = read([files["jsonl"], files["parquet"], files["dataset"]], text_field="body")
    assert mixed == expected * 3 and stats.files == 3


def test_a_selection_of_a_dataset_reads_as_it_shows(tmp_path, datasets_lib):
    dataset = datasets_lib.Dataset.from_dict({"text": TEXTS}).select([3, 0])  # an indices mapping over the table
    assert read(dataset)[0] == [["Fourth.", "Fifth?", "Sixth."], ["One sentence here.", "And a second one!"]]


def test_a_null_text_is_an_empty_document(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["A document.", None, "Another one."]}), path)
    docs, stats = read(path)
    assert docs == [["A document."], ["Another one."]] and stats.empty_documents_skipped == 1


def test_a_missing_text_column_lists_the_columns_there_are(tmp_path):
    path = tmp_path / "sentences.parquet"
    pq.write_table(pa.table({"sentence": ["a b c."], "source": ["web"]}), path)
    with pytest.raises(DataFormatError) as e:
        read_documents(path)  # the call itself checks, before anything is read
    message = str(e.value)
    assert message.startswith(f"{path}: no column 'text'") and "sentence, source" in message
    assert "text_field" in message and e.value.field == "text"
    assert read(path, text_field="sentence")[0] == [["a b c."]]
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(DataFormatError, match=r"column 'text' holds int64, not text"):
        read_documents(path)


def test_a_datasets_folder_without_the_column_and_a_folder_of_splits(tmp_path, datasets_lib):
    dataset = datasets_lib.Dataset.from_dict({"sentence": ["x y."]})
    dataset.save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataFormatError, match=r"one: no column 'text' \(its columns: sentence\)"):
        read_documents(tmp_path / "one")
    datasets_lib.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(FileNotFoundError, match=r"several splits.*splits/train"):
        read_documents(tmp_path / "splits")
    assert read(tmp_path / "splits" / "train", text_field="sentence")[0] == [["x y."]]


@pytest.mark.parametrize("damage", ["cut in half", "footer bytes flipped", "data page bytes zeroed"])
def test_a_damaged_parquet_file_is_an_error_naming_it(tmp_path, damage):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": [f"Document {i} has words in it." * 5 for i in range(400)]}), path,
                   row_group_size=50)
    data = bytearray(path.read_bytes())
    if damage == "cut in half":
        data = data[:len(data) // 2]
    elif damage == "footer bytes flipped":
        data[-200:-100] = bytes(b ^ 0xFF for b in data[-200:-100])
    else:
        data[1000:1100] = bytes(100)
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError) as e:
        sum(1 for _ in read_documents(path))
    assert str(e.value).startswith(f"{path}: cannot read it") and "damaged or cut short" in str(e.value)


def test_a_text_format_given_for_columnar_data_is_refused(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a."]}), path)
    with pytest.raises(DataFormatError, match=r"is parquet data, not jsonl"):
        read_documents(path, format="jsonl")
    text = tmp_path / "c.txt"
    text.write_text("plain text.\n")
    with pytest.raises(DataFormatError, match=r"c.txt: cannot read it as a Parquet file"):
        read_documents(text, format="parquet")


def test_reading_streams_a_bounded_batch_at_a_time(tmp_path, monkeypatch):
    """A Parquet file of 40 row groups is read a batch of BATCH_ROWS rows at a time, lazily: when the k-th document
    comes out, at most k + BATCH_ROWS rows have been decoded."""
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"Document number {i}." for i in range(4000)]}), path, row_group_size=100)
    assert pq.ParquetFile(path).num_row_groups == 40
    monkeypatch.setattr(columnar, "BATCH_ROWS", 16)
    sizes: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in iter_batches(self, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    documents = read_documents(path)
    assert sizes == []  # nothing is decoded before the first document is asked for
    for k, doc in enumerate(documents, 1):
        assert sum(sizes) <= k + 16
    assert k == 4000 and max(sizes) <= 16 and sum(sizes) == 4000
    # Arrow record batches of any size are sliced to BATCH_ROWS (without a copy)
    stream = tmp_path / "big.arrow"
    table = pa.table({"text": [f"Row {i}." for i in range(1000)]})
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    assert {b.num_rows for b in columnar.open_columnar(stream).batches(["text"])} == {16, 1000 % 16}


def test_class_label_ids_read_as_their_names(tmp_path, datasets_lib):
    features = datasets_lib.Features({"text": datasets_lib.Value("string"),
                                      "label": datasets_lib.ClassLabel(names=["neg", "pos"]),
                                      "tags": datasets_lib.List(datasets_lib.ClassLabel(names=["O", "B-X"]))})
    dataset = datasets_lib.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, -1],
                                              "tags": [[0, 1], [], [1]]}, features=features)
    dataset.to_parquet(str(tmp_path / "l.parquet"))
    dataset.save_to_disk(str(tmp_path / "l"))
    expected = [(1, {"label": "pos", "tags": ["O", "B-X"]}), (2, {"label": "neg", "tags": []}),
                (3, {"label": None, "tags": ["B-X"]})]
    for source in (tmp_path / "l.parquet", tmp_path / "l", dataset):
        assert list(columnar.records(source, ["label", "tags"])) == expected
    pq.write_table(pa.Table.from_pandas(dataset.to_pandas(), preserve_index=False).replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": {"label": {"_type": "ClassLabel", "names": ["neg"]}}}})}),
        tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match=r"bad.parquet, row 1: column 'label': class id 1 has no name"):
        list(columnar.records(tmp_path / "bad.parquet", ["label"]))


def test_an_error_at_a_row_says_row(tmp_path):
    assert str(DataFormatError("missing", path="d.parquet", line=Row(7))) == "d.parquet, row 7: missing"
    assert str(DataFormatError("missing", path="d.jsonl", line=7)) == "d.jsonl:7: missing"


def test_without_pyarrow_one_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a b."]}), path)
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails
    assert detect_format(path) == "parquet"  # told by its first bytes, without pyarrow
    with pytest.raises(UsageError) as e:
        read_documents(path)
    assert str(path) in str(e.value) and "pip install 'bertforge[arrow]'" in str(e.value)
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--input", str(path), "--vocab-size", "40", "--out", str(tmp_path / "tok")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bertforge[arrow]" in err[0] and not (tmp_path / "tok").exists()


def test_prepare_makes_the_instances_of_the_same_text_in_jsonl(tmp_path, datasets_lib):
    from bertforge.data.prepare import PrepareSettings, prepare
    from bertforge.vocab import train_vocab

    rng = np.random.default_rng(0)
    words = "the cat dog runs sees big small red house tree river".split()
    texts = [" ".join(" ".join(rng.choice(words, 8)).capitalize() + "." for _ in range(6)) for _ in range(60)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    datasets_lib.Dataset.from_dict({"body": texts}).to_parquet(str(tmp_path / "c.parquet"))
    dataset = datasets_lib.Dataset.from_dict({"body": texts})
    train_vocab(texts, 60, min_frequency=1).save_pretrained(tmp_path / "tok")
    settings = PrepareSettings(max_seq_length=32, text_field="body")
    metas, tokens = {}, {}
    for name, corpus in (("jsonl", tmp_path / "c.jsonl"), ("parquet", tmp_path / "c.parquet"), ("dataset", dataset)):
        metas[name] = prepare([corpus], tmp_path / "tok", tmp_path / name, settings, workers=1, progress=False)
        tokens[name] = np.concatenate([np.load(p) for p in sorted((tmp_path / name).glob("train-*-tokens.npy"))])
    assert np.array_equal(tokens["jsonl"], tokens["parquet"]) and np.array_equal(tokens["jsonl"], tokens["dataset"])
    assert metas["jsonl"]["instances"] == metas["parquet"]["instances"]
    again = prepare([tmp_path / "c.parquet"], tmp_path / "tok", tmp_path / "parquet", settings, workers=1,
                    progress=False)
    assert again == metas["parquet"]  # reused: same files, vocabulary and settings
