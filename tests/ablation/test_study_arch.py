"""`ablate --arch`: one architecture for every row of BERT's objectives and for random init (RoFormer, BERT with
rotary positions, leaves the masked-LM unigram stage at a small budget), BERT with learned positions beside them,
the architecture stated in the table, and a finished row of another architecture refused, never reused."""

import json

import pytest

from bertforge.ablation.plan import LEARNED_POSITIONS, Study, select_variants, variants_of
from bertforge.ablation.report import markdown
from bertforge.ablation.run import _pretrain, family_of_row, model_root, pretrain_args
from bertforge.errors import CheckpointError


@pytest.fixture
def files(tmp_path):
    for name in ("train", "dev"):
        (tmp_path / f"{name}.jsonl").write_text('{"text": "a", "label": "x"}\n')
    return [str(tmp_path / "train.jsonl")], [f"sent=classify:{tmp_path / 'train.jsonl'},{tmp_path / 'dev.jsonl'}"]


def study_of(files, tmp_path, **settings) -> Study:
    corpus, task = files
    return Study(corpus=corpus, task=task, out=str(tmp_path / "study"), preset="tiny", **settings)


def test_the_rows_of_berts_objectives_take_the_study_architecture(files, tmp_path):
    study = study_of(files, tmp_path, arch="roformer", variants=["main"])
    names = [v.name for v in study.chosen]
    assert LEARNED_POSITIONS in names  # the paper's architecture beside the study's
    archs = {v.name: pretrain_args(study, v, tmp_path / "tok").arch for v in study.chosen if v.kind == "pretrain"
             and v.model is None}
    for name in ("bert", "no-nsp", "sop", "spans", "ltr", "electra"):  # ELECTRA's objective trains RoFormer too
        assert archs[name] == "roformer", name
    assert archs[LEARNED_POSITIONS] == "bert"
    assert (archs["elmo"], archs["xlnet"]) == (None, None)  # their objectives' own families
    assert {name: family_of_row(study, v) for name, v in variants_of("tiny").items() if name in
            ("bert", "random", "elmo", "electra", LEARNED_POSITIONS, "word2vec")} == {
        "bert": "roformer", "random": "roformer", "elmo": "elmo", "electra": "roformer", LEARNED_POSITIONS: "bert",
        "word2vec": None}
    on_bert = study_of(files, tmp_path, arch="bert", variants=["electra"])  # the paper's study: ELECTRA's own
    assert family_of_row(on_bert, on_bert.chosen[0]) == "electra"


def test_the_learned_positions_row_is_only_added_when_it_differs(files, tmp_path):
    assert LEARNED_POSITIONS not in [v.name for v in select_variants(["main"], "tiny")]
    assert LEARNED_POSITIONS not in [v.name for v in study_of(files, tmp_path, variants=["all"]).chosen]
    bert = study_of(files, tmp_path, variants=["bert"])
    assert pretrain_args(bert, bert.chosen[0], tmp_path / "tok").arch == "bert"


def test_random_init_is_the_study_architecture_and_a_row_of_another_is_refused(files, tmp_path):
    from bertforge.tokenization import BertTokenizer

    tokenizer = BertTokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])})
    tokenizer.save_pretrained(tmp_path / "tok")
    study = study_of(files, tmp_path, arch="roformer", variants=["random"])
    random = variants_of("tiny")["random"]
    _pretrain(study, random, tmp_path / "tok", print)
    saved = json.loads((model_root(study, random) / "model" / "config.json").read_text())
    assert saved["model_type"] == "roformer"
    _pretrain(study, random, tmp_path / "tok", print)  # done, by the same architecture: nothing to do
    as_bert = study_of(files, tmp_path, arch="bert", variants=["random"])  # the same --out, another --arch
    with pytest.raises(CheckpointError, match=r"the random row was pre-trained as roformer, and this study asks for "
                                              r"bert \(--arch bert\)"):
        _pretrain(as_bert, random, tmp_path / "tok", print)


def test_the_table_states_the_architecture(files, tmp_path):
    for arch, stated in (("roformer", True), ("bert", False)):
        study = study_of(files, tmp_path, arch=arch, variants=["bert"])
        results = {"settings": {**vars(study), "tasks": []}, "variants": {}, "claims": []}
        text = markdown(study, results)
        assert ("**RoFormer (BERT with rotary positions)**" in text) is stated
