"""Reading GLUE's official files: every quirk of the layout, checked against the existing ``--format glue:TASK``
reader where both read the same file, and the refusals, each naming file and line."""

from __future__ import annotations

import pytest

from bertforge.data.readers import read_glue
from bertforge.errors import DataFormatError, PathError
from bertforge.glue import layout
from tests.glue.files import QQP_BROKEN


def _lines(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8-sig").splitlines()]


@pytest.mark.parametrize("task", list(layout.TASKS))
def test_train_and_dev_agree_with_the_glue_format_reader(glue_dir, task):
    data = layout.read_task(glue_dir, task)
    for split in (data.train, *data.dev):
        theirs = read_glue(split.path, task, skip_malformed=True)
        assert [(e.text, e.text_pair, e.label) for e in split.examples] == \
               [(e.text, e.text_pair, e.label) for e in theirs]


def test_cola_train_has_no_header_and_its_test_file_has_one(glue_dir):
    data = layout.read_task(glue_dir, "cola")
    rows = _lines(glue_dir / "CoLA" / "train.tsv")
    assert len(data.train.examples) == len(rows) == 24  # the first line is an example, not a header
    assert data.train.examples[0].text == rows[0][3] and data.train.examples[0].label == rows[0][1]
    test_rows = _lines(glue_dir / "CoLA" / "test.tsv")
    assert test_rows[0] == ["index", "sentence"]
    assert [(e.id, e.text) for e in data.test[0].examples] == [(r[0], r[1]) for r in test_rows[1:]]


def test_sst2_test_ids_are_its_index_column(glue_dir):
    data = layout.read_task(glue_dir, "sst2")
    assert [e.id for e in data.test[0].examples] == [str(i) for i in range(6)]
    assert data.train.examples[0].text.endswith(" ")  # SST-2's trailing space is the text's own


def test_mnli_reads_matched_and_mismatched_files_with_their_extra_columns(glue_dir):
    data = layout.read_task(glue_dir, "mnli")
    assert [s.path.name for s in data.dev] == ["dev_matched.tsv", "dev_mismatched.tsv"]
    assert [s.path.name for s in data.test] == ["test_matched.tsv", "test_mismatched.tsv"]
    rows = _lines(glue_dir / "MNLI" / "dev_mismatched.tsv")
    assert len(rows[0]) == 16 and len(_lines(glue_dir / "MNLI" / "train.tsv")[0]) == 12
    assert [(e.text, e.text_pair, e.label) for e in data.dev[1].examples] == [(r[8], r[9], r[15]) for r in rows[1:]]


def test_qqp_rows_with_missing_fields_are_skipped_and_counted(glue_dir):
    data = layout.read_task(glue_dir, "qqp")
    assert data.train.skipped == 2 * QQP_BROKEN
    assert data.train.skipped_lines == [5, 6, 8, 9]  # the cut records' two halves
    assert len(data.train.examples) == 24 and data.dev[0].skipped == 0


def test_stsb_scores_are_floats(glue_dir):
    data = layout.read_task(glue_dir, "stsb")
    rows = _lines(glue_dir / "STS-B" / "dev.tsv")
    assert [e.label for e in data.dev[0].examples] == [float(r[9]) for r in rows[1:]]


def test_fields_are_not_quoted(glue_dir):
    data = layout.read_task(glue_dir, "rte")
    quoted = [e.text for e in data.train.examples if '"' in e.text]
    assert quoted and all(e.text.count('"') == 1 for e in data.train.examples if '"' in e.text)


def test_mrpc_byte_order_mark_is_not_part_of_the_header(glue_dir):
    assert (glue_dir / "MRPC" / "train.tsv").read_bytes().startswith("\ufeff".encode())
    assert len(layout.read_task(glue_dir, "mrpc").train.examples) == 24


def test_diagnostic_is_read_with_its_index(glue_dir):
    ax = layout.read_diagnostic(glue_dir)
    assert [e.id for e in ax.examples] == [str(i) for i in range(7)] and ax.examples[0].label is None
    assert layout.read_diagnostic(glue_dir / "nowhere") is None


def test_missing_task_folder_lists_the_folders_found(glue_dir):
    import shutil

    shutil.rmtree(glue_dir / "RTE")
    with pytest.raises(PathError, match=r"no RTE/ folder for task rte .*found: CoLA, MNLI, MRPC, QNLI, QQP, "
                                        r"SST-2, STS-B, WNLI, diagnostic"):
        layout.read_task(glue_dir, "rte")


def test_missing_file_lists_the_files_found(glue_dir):
    (glue_dir / "MNLI" / "dev_mismatched.tsv").unlink()
    with pytest.raises(PathError, match=r"dev_mismatched.tsv: missing from MNLI/ \(found: dev_matched.tsv, "):
        layout.read_task(glue_dir, "mnli")


def _edit(path, lineno: int, row: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = row
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_row_with_the_wrong_column_count_names_file_and_line(glue_dir):
    path = glue_dir / "RTE" / "dev.tsv"
    _edit(path, 4, "3\tA cat\tsleeps\tin a tree .\tentailment")  # a tab inside a sentence
    with pytest.raises(DataFormatError, match=rf"{path}:4: 5 columns, RTE's dev.tsv has 4 \(its header\)"):
        layout.read_task(glue_dir, "rte")


def test_a_short_row_is_an_error_outside_qqp(glue_dir):
    path = glue_dir / "CoLA" / "train.tsv"
    _edit(path, 7, "gj04\t1\tA cat sleeps .")
    with pytest.raises(DataFormatError, match=rf"{path}:7: 3 columns, CoLA's train.tsv has 4"):
        layout.read_task(glue_dir, "cola")


@pytest.mark.parametrize("folder, task, row, bad", [
    ("RTE", "rte", "2\tA cat .\tA dog .\tneutral", "'neutral' is not one of RTE's labels: entailment, not_entailment"),
    ("SST-2", "sst2", "A cat .\t2", "'2' is not one of SST-2's labels: 0, 1"),
    ("STS-B", "stsb", "1\tg\tf\ty\t0\tn\tn\tA cat .\tA dog .\t5.5", r"score '5.5' is outside STS-B's range \[0, 5\]"),
])
def test_a_label_outside_the_tasks_set_names_file_and_line(glue_dir, folder, task, row, bad):
    path = glue_dir / folder / "dev.tsv"
    _edit(path, 3, row)
    with pytest.raises(DataFormatError, match=rf"{path}:3: .*{bad}"):
        layout.read_task(glue_dir, task)


@pytest.mark.parametrize("folder, task", [("RTE", "rte"), ("CoLA", "cola"), ("MRPC", "mrpc"), ("QQP", "qqp")])
def test_a_test_file_where_the_dev_file_belongs_is_refused(glue_dir, folder, task):
    import shutil

    shutil.copy(glue_dir / folder / "test.tsv", glue_dir / folder / "dev.tsv")
    with pytest.raises(DataFormatError, match=rf"dev.tsv:1: is a test file .*where {folder}'s labelled dev.tsv "
                                              "belongs"):
        layout.read_task(glue_dir, task)


def test_a_foreign_header_is_refused_with_the_expected_columns(glue_dir):
    path = glue_dir / "QNLI" / "train.tsv"
    _edit(path, 1, "index\tsentence1\tsentence2\tlabel")  # RTE's header in QNLI's folder
    with pytest.raises(DataFormatError, match=rf"{path}:1: not QNLI's train.tsv header: expected 'question' in "
                                              "column 2, 'sentence' in column 3, 'label' in column 4"):
        layout.read_task(glue_dir, "qnli")


def test_a_cut_test_row_is_an_error_since_every_test_row_needs_a_prediction(glue_dir):
    path = glue_dir / "QQP" / "test.tsv"
    _edit(path, 3, "1\tHow does a cat")
    with pytest.raises(DataFormatError, match=rf"{path}:3: 2 columns, the header has 3"):
        layout.read_task(glue_dir, "qqp")


def test_task_names_as_people_write_them():
    assert [layout.task_key(n) for n in ("SST-2", "sts-b", "MNLI", "qqp", "ax")] == ["sst2", "stsb", "mnli", "qqp",
                                                                                   None]
