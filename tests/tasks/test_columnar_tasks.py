"""Every task family reads Parquet, Arrow, datasets folders and datasets.Dataset objects: the examples equal those
of the same data in the family's text format (JSONL, CSV, SQuAD JSON), with the text formats' columns or the
Hugging Face datasets' own schemas (ClassLabel ids read as names). The library's entry points (finetune, pretrain,
Predictor.evaluate) take a Dataset where they take a path, and record it readably."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from unavailable import require

pa = require("pyarrow")
pq = require("pyarrow.parquet")
datasets = require("datasets")
datasets.disable_progress_bars()

from bertforge.cli import main  # noqa: E402
from bertforge.data.options import DataOptions  # noqa: E402
from bertforge.errors import DataFormatError  # noqa: E402
from bertforge.tasks import TASKS  # noqa: E402

OPTS = DataOptions()
Features, Value, ClassLabel, List = datasets.Features, datasets.Value, datasets.ClassLabel, datasets.List


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def columnar_forms(tmp_path: Path, stem: str, columns: dict, features=None) -> dict[str, object]:
    """The same columns as a Parquet file written by pyarrow, one written by datasets, a datasets folder and a
    Dataset; the files are named ``stem`` so that ids made from the name equal the text file's."""
    dataset = datasets.Dataset.from_dict(columns, features=features)
    (tmp_path / "pa").mkdir(parents=True, exist_ok=True)
    (tmp_path / "hf").mkdir(exist_ok=True)
    forms = {"pyarrow": tmp_path / "pa" / f"{stem}.parquet", "datasets-parquet": tmp_path / "hf" / f"{stem}.parquet",
             "datasets-folder": tmp_path / stem}
    pq.write_table(dataset.data.table, forms["pyarrow"], row_group_size=2)
    dataset.to_parquet(str(forms["datasets-parquet"]))
    dataset.save_to_disk(str(forms["datasets-folder"]))
    forms["dataset"] = dataset
    return forms


def without_ids(examples: list) -> list:
    return [replace(e, id="") for e in examples]


def assert_reads(task: str, forms: dict, expected: list, opts: DataOptions = OPTS) -> None:
    for name, source in forms.items():
        got = TASKS[task].read(source, opts)
        if name == "dataset":  # ids made from a name are the Dataset's fingerprint's
            got, want = without_ids(got), without_ids(expected)
        else:
            want = expected
        assert got == want, name


TEXTS = [("a good film", "i liked it", "pos"), ("an awful plot", None, "neg"), ("fine actors", "and a story", "pos"),
         ("sad ending", "poor", "neg"), ("lovely", None, "pos")]


def test_classify_and_regress_read_a_tables_columns(tmp_path):
    rows = [{"text": t, "text_pair": p, "label": label} for t, p, label in TEXTS]
    expected = TASKS["classify"].read(jsonl(tmp_path / "train.jsonl", rows), OPTS)
    assert [e.label for e in expected] == ["pos", "neg", "pos", "neg", "pos"] and expected[1].text_pair is None
    columns = {"text": [t for t, _, _ in TEXTS], "text_pair": [p for _, p, _ in TEXTS],
               "label": [label for _, _, label in TEXTS]}
    assert_reads("classify", columnar_forms(tmp_path, "train", columns), expected)
    scores = [{"text": t, "label": i / 4} for i, (t, _, _) in enumerate(TEXTS)]
    expected = TASKS["regress"].read(jsonl(tmp_path / "sts.jsonl", scores), OPTS)
    columns = {"text": [r["text"] for r in scores], "label": [r["label"] for r in scores]}
    assert_reads("regress", columnar_forms(tmp_path, "sts", columns), expected)


def test_class_label_ids_read_as_names_and_the_field_flags_name_columns(tmp_path):
    # Hugging Face's sst2: sentence, label (a ClassLabel), idx
    rows = [{"sentence": t, "label": "positive" if label == "pos" else "negative"} for t, _, label in TEXTS]
    opts = DataOptions(text_field="sentence")
    expected = TASKS["classify"].read(jsonl(tmp_path / "sst2.jsonl", rows), opts)
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "idx": Value("int32")})
    columns = {"sentence": [t for t, _, _ in TEXTS], "label": [int(label == "pos") for _, _, label in TEXTS],
               "idx": list(range(len(TEXTS)))}
    forms = columnar_forms(tmp_path, "sst2", columns, features)
    assert_reads("classify", forms, expected, opts)
    with pytest.raises(DataFormatError) as e:
        TASKS["classify"].read(forms["datasets-parquet"], OPTS)
    assert "no column 'text' (its columns: sentence, label, idx)" in str(e.value) and "--text-field" in str(e.value)


def test_snli_reads_its_fields_and_hugging_faces(tmp_path):
    pairs = [("A man plays.", "Someone plays.", "entailment"), ("A dog runs.", "A cat sleeps.", "contradiction"),
             ("Two kids.", "Kids are twins.", "-"), ("A woman sings.", "She is loud.", "neutral")]
    rows = [{"sentence1": a, "sentence2": b, "gold_label": g} for a, b, g in pairs]
    expected = TASKS["classify"].read(jsonl(tmp_path / "snli.jsonl", rows), OPTS)
    assert len(expected) == 3  # the pair without a gold label is dropped
    columns = {"sentence1": [a for a, _, _ in pairs], "sentence2": [b for _, b, _ in pairs],
               "gold_label": [g for _, _, g in pairs]}
    assert_reads("classify", columnar_forms(tmp_path / "own", "snli", columns), expected)
    names = ["entailment", "neutral", "contradiction"]  # Hugging Face's snli: -1 where annotators disagreed
    features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=names)})
    columns = {"premise": [a for a, _, _ in pairs], "hypothesis": [b for _, b, _ in pairs],
               "label": [names.index(g) if g != "-" else -1 for _, _, g in pairs]}
    assert_reads("classify", columnar_forms(tmp_path, "snli", columns, features), expected)


def test_choice_reads_swag_columns(tmp_path):
    header = ["video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source", "ending0", "ending1", "ending2",
              "ending3", "label"]
    rows = [["v1", "101", "s", "A man sits.", "He", "gold", "stands.", "runs.", "eats.", "sleeps.", "2"],
            ["v2", "102", "s", "A girl reads.", "She", "gen", "smiles.", "cries.", "jumps.", "sings.", "0"]]
    with open(tmp_path / "swag.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    expected = TASKS["choice"].read(tmp_path / "swag.csv", OPTS)
    assert [e.label for e in expected] == [2, 0] and [e.id for e in expected] == ["101", "102"]
    features = Features({**{name: Value("string") for name in header[:-1]},
                         "label": ClassLabel(names=["0", "1", "2", "3"])})  # Hugging Face's swag
    columns = {name: [r[i] for r in rows] for i, name in enumerate(header[:-1])} | {"label": [2, 0]}
    assert_reads("choice", columnar_forms(tmp_path, "swag", columns, features), expected)
    with pytest.raises(DataFormatError, match=r"no column 'sent1'.*multiple choice reads SWAG's fields"):
        TASKS["choice"].read(columnar_forms(tmp_path / "other", "t", {"text": ["x"]})["dataset"], OPTS)


def test_tag_reads_words_and_tags_and_hugging_faces_tokens_and_ner_tags(tmp_path):
    sentences = [(["Alice", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]),
                 (["Bob", "Smith", "left"], ["B-PER", "I-PER", "O"])]
    for scheme in ("BIO", "IOBES"):
        opts = DataOptions(scheme=scheme)
        expected = TASKS["tag"].read(jsonl(tmp_path / "ner.jsonl", [{"words": w, "tags": t} for w, t in sentences]),
                                     opts)
        assert expected[1].tags == (["B-PER", "I-PER", "O"] if scheme == "BIO" else ["B-PER", "E-PER", "O"])
        home = tmp_path / scheme
        columns = {"words": [w for w, _ in sentences], "tags": [t for _, t in sentences]}
        assert_reads("tag", columnar_forms(home, "ner", columns), expected, opts)
        names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]  # Hugging Face's conll2003
        features = Features({"id": Value("string"), "tokens": List(Value("string")),
                             "ner_tags": List(ClassLabel(names=names))})
        columns = {"id": ["0", "1"], "tokens": [w for w, _ in sentences],
                   "ner_tags": [[names.index(t) for t in tags] for _, tags in sentences]}
        assert_reads("tag", columnar_forms(home / "hf-schema", "ner", columns, features), expected, opts)
    with pytest.raises(DataFormatError, match=r"no column 'words' \(its columns: text\).*tagging reads"):
        TASKS["tag"].read(columnar_forms(tmp_path / "other", "t", {"text": ["x"]})["dataset"], OPTS)
    with pytest.raises(DataFormatError, match=r"format 'conll' reads text files"):
        TASKS["tag"].read(tmp_path / "BIO" / "ner", DataOptions(format="conll"))


def test_qa_reads_hugging_faces_squad_rows(tmp_path):
    def paragraph(context, qas):
        return {"context": context, "qas": qas}

    contexts = ["alice lives in paris . the river is near .", "bob works in rome ."]
    data = {"version": "v2.0", "data": [{"title": "towns", "paragraphs": [
        paragraph(contexts[0], [
            {"id": "q1", "question": "where does alice live ?", "answers": [{"text": "paris", "answer_start": 15},
                                                                            {"text": "in paris", "answer_start": 12}]},
            {"id": "q2", "question": "what is near ?", "answers": [], "is_impossible": True},
            {"id": "q3", "question": "misaligned ?", "answers": [{"text": "river", "answer_start": 3}]}]),
        paragraph(contexts[1], [{"id": "q4", "question": "where does bob work ?",
                                 "answers": [{"text": "rome", "answer_start": 13}]}])]}]}
    (tmp_path / "squad.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="question q3"):
        expected = TASKS["qa"].read(tmp_path / "squad.json", OPTS)
    assert [e.id for e in expected] == ["q1", "q2", "q4"] and expected[1].is_impossible
    questions = [qa | {"context": p["context"], "title": "towns"} for p in data["data"][0]["paragraphs"]
                 for qa in p["qas"]]
    columns = {"id": [q["id"] for q in questions], "title": [q["title"] for q in questions],
               "context": [q["context"] for q in questions], "question": [q["question"] for q in questions],
               "answers": [{"text": [a["text"] for a in q["answers"]],
                            "answer_start": [a["answer_start"] for a in q["answers"]]} for q in questions]}
    features = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})
    forms = columnar_forms(tmp_path, "squad", columns, features)
    with pytest.warns(UserWarning, match="question q3"):
        assert_reads("qa", forms, expected)
    columns["answers"][0]["answer_start"][0] = 99
    with pytest.raises(DataFormatError, match=r"question q1 \(row 1\): answer 'paris' at answer_start 99 lies past"):
        TASKS["qa"].read(columnar_forms(tmp_path / "past", "squad", columns, features)["dataset"], OPTS)


def test_a_damaged_task_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["a b"] * 50, "label": ["x", "y"] * 25}), path)
    path.write_bytes(path.read_bytes()[:-10])
    for task in ("classify", "choice", "tag", "qa"):
        with pytest.raises(DataFormatError, match=rf"^{path}: cannot read it as a Parquet file"):
            TASKS[task].read(path, OPTS)



PREDICTION_INPUTS = {  # family: (JSON lines, the same as columns in the family's or Hugging Face's names)
    "classify": ([{"text": "a good film", "text_pair": "i liked it"}, {"text": "sad ending", "text_pair": "poor"}],
                 {"premise": ["a good film", "sad ending"], "hypothesis": ["i liked it", "poor"],
                  "label": [0, 2]}),
    "tag": ([{"words": ["Alice", "sees", "Bob"]}, {"words": ["Paris"]}],
            {"tokens": [["Alice", "sees", "Bob"], ["Paris"]], "ner_tags": [[1, 0, 1], [3]]}),
    "choice": ([{"context": "He sat.", "endings": [f"Then he {e}" for e in "abcd"]}],
               {"sent1": ["He sat."], "sent2": ["Then he"], **{f"ending{i}": [e] for i, e in enumerate("abcd")}}),
    "qa": ([{"question": "Who?", "context": "Alice did."}], {"question": ["Who?"], "context": ["Alice did."],
                                                             "id": ["q1"]}),
}


@pytest.mark.parametrize("task", PREDICTION_INPUTS)
def test_prediction_inputs_are_read_from_columns_as_from_json_lines(tmp_path, task):
    """``predict --input`` (Task.read_inputs): a row is the JSON object of a line; the columns training reads
    (SNLI, Hugging Face's tokens, SWAG) work too."""
    lines, hf_columns = PREDICTION_INPUTS[task]
    expected = without_ids(TASKS[task].read_inputs(jsonl(tmp_path / "in.jsonl", lines), OPTS))
    own_columns = {name: [line[name] for line in lines] for name in lines[0]}
    for columns in (own_columns, hf_columns):
        forms = columnar_forms(tmp_path / str(len(columns)), "in", columns)
        for name, form in forms.items():
            got = TASKS[task].read_inputs(form, OPTS)
            assert without_ids(got) == expected, name
            assert name == "dataset" or [e.id for e in got][:1] == ["row-1"]


def test_a_prediction_input_without_the_fields_names_the_row_and_the_columns(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"sentence": ["a", "b"], "words": [["a"], ["b"]]}), path)
    with pytest.raises(DataFormatError, match=rf"^{path}, row 1: no column 'text' \(its columns: sentence, words\)"):
        TASKS["classify"].read_inputs(path, OPTS)
    pq.write_table(pa.table({"text": ["a", None]}), path)
    with pytest.raises(DataFormatError, match=rf"^{path}, row 2: field 'text' should be str, got NoneType"):
        TASKS["classify"].read_inputs(path, OPTS)
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(DataFormatError, match=rf"^{path}: no rows"):
        TASKS["classify"].read_inputs(path, OPTS)


def test_a_prediction_input_decodes_only_the_columns_its_task_reads(tmp_path, monkeypatch):
    """A table's other columns (SQuAD's answers, a label, an id) are never decoded for ``predict``."""
    from bertforge.data import columnar

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"], "idx": [0, 1]}), path)
    decoded = []
    rows = columnar.Columnar.rows
    monkeypatch.setattr(columnar.Columnar, "rows", lambda self, columns, optional=(), hint=None:
                        decoded.append(sorted(optional)) or rows(self, columns, optional, hint))
    assert [e.text for e in TASKS["classify"].read_inputs(path, OPTS)] == ["a", "b"]
    assert decoded == [["text"]]


def test_a_study_takes_datasets_folders_and_parquet_files(tmp_path):
    """``ablate --corpus/--task`` take what pretrain and finetune take; a folder of several splits is refused."""
    from bertforge.ablation.plan import Study
    from bertforge.errors import PathError

    datasets.Dataset.from_dict({"text": ["The cat sat."] * 4}).save_to_disk(str(tmp_path / "corpus"))
    datasets.Dataset.from_dict(sentiment()).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_dict(sentiment()).save_to_disk(str(tmp_path / "dev"))
    study = Study(corpus=[str(tmp_path / "corpus")], task=[f"sent=classify:{tmp_path}/train.parquet,{tmp_path}/dev"],
                  out=str(tmp_path / "study"))
    assert study.specs[0].dev == f"{tmp_path}/dev"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(sentiment())}).save_to_disk(str(tmp_path / "both"))
    with pytest.raises(PathError, match="--corpus .*both: is a datasets folder of several splits"):
        Study(corpus=[str(tmp_path / "both")], task=study.task, out=str(tmp_path / "study"))

# --- the library's entry points take a Dataset ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from bertforge.config import BertConfig
    from bertforge.model import BertForPreTraining
    from bertforge.vocab import train_vocab

    d = tmp_path_factory.mktemp("tiny")
    tok = train_vocab([" ".join(t for t, _, _ in TEXTS) + " i liked it and a story poor"] * 4, 60, min_frequency=1)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    BertForPreTraining(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
                       ).save_pretrained(d)
    return d


def sentiment() -> dict:
    return {"text": [t for t, _, _ in TEXTS] * 4, "label": [label for _, _, label in TEXTS] * 4}


@pytest.mark.slow
def test_finetune_and_evaluate_take_a_dataset_and_record_it(tiny_model, tmp_path):
    from bertforge import FinetuneArgs, Predictor, finetune

    train = datasets.Dataset.from_dict(sentiment())
    dev = datasets.Dataset.from_dict(sentiment()).select(range(5))
    args = FinetuneArgs(model=str(tiny_model), train=train, dev=dev, out=str(tmp_path / "ft"), epochs=1,
                        batch_size=8, progress=False, data=DataOptions(max_length=32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = finetune(args)
    assert summary["split"] == "dev"
    recorded = json.loads((tmp_path / "ft" / "finetune_args.json").read_text())
    assert recorded["train"] == f"datasets.Dataset {train._fingerprint} (20 rows; in memory)"
    assert recorded["dev"].startswith(f"datasets.Dataset {dev._fingerprint} (5 rows")
    result = Predictor.load(tmp_path / "ft" / "model").evaluate(dev, DataOptions(max_length=32))
    assert result["examples"] == 5 and result["data"] == f"datasets.Dataset {dev._fingerprint}"


@pytest.mark.slow
def test_finetune_evaluate_and_predict_read_parquet_and_datasets_folders_on_the_command_line(tiny_model, tmp_path,
                                                                                             capsys):
    datasets.Dataset.from_dict(sentiment()).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_dict(sentiment()).select(range(5)).save_to_disk(str(tmp_path / "dev"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["finetune", "--task", "classify", "--model", str(tiny_model), "--train", str(tmp_path / "train.parquet"),
              "--dev", str(tmp_path / "dev"), "--out", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "8",
              "--max-length", "32", "--no-progress"])
    assert json.loads((tmp_path / "ft" / "finetune_args.json").read_text())["dev"] == str(tmp_path / "dev")
    capsys.readouterr()
    main(["evaluate", "--model", str(tmp_path / "ft" / "model"), "--data", str(tmp_path / "dev"), "--max-length", "32"])
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 5 and result["data"] == str(tmp_path / "dev")
    jsonl(tmp_path / "dev.jsonl", [{"text": t} for t in sentiment()["text"][:5]])
    for source in ("dev", "dev.jsonl"):
        main(["predict", "--model", str(tmp_path / "ft" / "model"), "--input", str(tmp_path / source),
              "--output", str(tmp_path / f"{source}.out"), "--max-length", "32"])
    predictions = (tmp_path / "dev.out").read_text().splitlines()
    assert len(predictions) == 5 and predictions == (tmp_path / "dev.jsonl.out").read_text().splitlines()


@pytest.mark.slow
def test_pretrain_takes_a_dataset_corpus_and_records_it(tmp_path):
    from bertforge import PretrainArgs, pretrain

    sentences = "The cat sees the dog. A big red house stands. The river runs far. Birds sing over trees."
    corpus = datasets.Dataset.from_dict({"body": [sentences] * 60})
    args = PretrainArgs(corpus=[corpus], text_field="body", out=str(tmp_path / "run"), preset="tiny", seq_len=32,
                        batch_size=4, max_steps=2, warmup_steps=1, save_every=2, eval_every=2, eval_instances=4,
                        vocab_size=60, workers=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small corpus cannot fill the vocabulary
        result = pretrain(args)
    assert result["status"] == "done"
    recorded = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert recorded["corpus"] == [f"datasets.Dataset {corpus._fingerprint} (60 rows; in memory)"]
    assert recorded["text_field"] == "body"
    meta = json.loads((tmp_path / "run" / "data" / "meta.json").read_text())
    assert meta["corpus"]["documents"] == 60
