"""The paper's fine-tuning protocol in `ablate`: a learning-rate grid chosen per row and task on the mean dev
score over seeds, the reported split at that rate, each seed's best epoch, and the random + BiLSTM control."""

import dataclasses
import json

import pytest

from bertforge.ablation.plan import Study, select_variants, variants_of
from bertforge.ablation.report import _task_scores, markdown
from bertforge.ablation.run import finetune_dir, learning_rates
from bertforge.errors import UsageError


@pytest.fixture
def study(tmp_path):
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"text": "a", "label": "x"}\n')
    files = ",".join(str(tmp_path / f"{n}.jsonl") for n in ("train", "dev", "test"))
    return Study(corpus=[str(tmp_path / "train.jsonl")], task=[f"sent=classify:{files}"], out=str(tmp_path / "s"),
                 seeds=[1, 2], finetune_lr=[1e-4, 3e-4], feature_lr=[1e-3, 3e-3], variants=["bert", "bert-frozen"])


def fake_run(study, variant, lr, seed, dev, test, dev_by_epoch, mcc_by_epoch=None):
    """What `finetune` leaves behind: eval_results.json (test split reported) and metrics.jsonl dev records."""
    run = finetune_dir(study, variant, study.specs[0], seed, lr)
    run.mkdir(parents=True)
    (run / "eval_results.json").write_text(json.dumps({
        "split": "test", "accuracy": test, "per_seed": {str(seed): {"dev": {"accuracy": dev}, "test": {"accuracy": test}}}}))
    mcc = mcc_by_epoch or [0.5] * len(dev_by_epoch)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": 10 * e, "seed": seed, "epoch": e, "dev_accuracy": a,
                                                           "dev_mcc": m}) + "\n"
                                               for e, (a, m) in enumerate(zip(dev_by_epoch, mcc))))


def test_the_rate_with_the_best_mean_dev_score_is_reported_with_its_test_scores(study):
    bert = variants_of(study.preset)["bert"]
    # lr 1e-4: dev 0.60 / 0.70 (mean 0.65), test 0.9 / 0.8; lr 3e-4: dev 0.66 / 0.66 (mean 0.66), test 0.5 / 0.7.
    fake_run(study, bert, 1e-4, 1, 0.60, 0.9, [0.5, 0.6])
    fake_run(study, bert, 1e-4, 2, 0.70, 0.8, [0.7, 0.6])
    fake_run(study, bert, 3e-4, 1, 0.66, 0.5, [0.1, 0.66, 0.66, 0.2])
    fake_run(study, bert, 3e-4, 2, 0.66, 0.7, [0.1, 0.2, 0.66])
    scores = _task_scores(study, bert, study.specs[0])
    assert scores["lr"] == 3e-4  # chosen on dev, although 1e-4's test scores are higher
    assert scores["grid_dev"] == pytest.approx({"0.0001": 0.65, "0.0003": 0.66})
    assert scores["per_seed"] == {"1": 0.5, "2": 0.7}
    assert scores["mean"] == pytest.approx(0.6) and scores["std"] == pytest.approx(0.1414, abs=1e-4)
    assert scores["best_epochs"] == {"1": 2, "2": 3}  # first epoch with the best dev score, 1-based
    results = {"settings": {**vars(study), "tasks": []}, "variants": {"bert": {
        "label": "BERT", "pretrain": {}, "tasks": {"sent": scores}}}, "claims": []}
    assert "0.600 ± 0.141 (lr 0.0003, ep 2/3)" in markdown(study, results)
    assert "No reported run collapsed (best dev mcc at most 0.05" in markdown(study, results)


def test_a_run_that_never_left_a_constant_answer_is_named_collapsed(study):
    """A majority-class classifier has a fair accuracy and an MCC of 0: the table says which runs never left it."""
    bert = variants_of(study.preset)["bert"]
    fake_run(study, bert, 1e-4, 1, 0.52, 0.51, [0.52, 0.52, 0.52], mcc_by_epoch=[0.0, 0.03, 0.0])
    fake_run(study, bert, 1e-4, 2, 0.70, 0.69, [0.40, 0.70, 0.65], mcc_by_epoch=[0.02, 0.4, 0.3])
    scores = _task_scores(study, bert, study.specs[0])
    assert scores["collapsed"] == ["1"]
    assert scores["dev_curves"] == {"1": [0.52, 0.52, 0.52], "2": [0.40, 0.70, 0.65]}
    assert scores["best_epochs"] == {"1": 1, "2": 2}
    results = {"settings": {**vars(study), "tasks": []}, "variants": {"bert": {
        "label": "BERT", "pretrain": {}, "tasks": {"sent": scores}}}, "claims": []}
    text = markdown(study, results)
    assert "**collapsed: seed 1**" in text and "**Collapsed runs**" in text and "BERT on sent (seed 1)" in text


def test_a_resumed_epoch_counts_once_in_the_dev_curve(study):
    bert = variants_of(study.preset)["bert"]
    fake_run(study, bert, 1e-4, 1, 0.6, 0.6, [0.5, 0.6])
    run = finetune_dir(study, bert, study.specs[0], 1, 1e-4)
    with open(run / "metrics.jsonl", "a") as f:  # the run was cut in epoch 2 and resumed: epoch 1 scored again
        f.write(json.dumps({"step": 10, "seed": 1, "epoch": 1, "dev_accuracy": 0.6, "dev_mcc": 0.5}) + "\n")
    assert _task_scores(study, bert, study.specs[0])["dev_curves"]["1"] == [0.5, 0.6]


def test_frozen_rows_search_the_feature_grid(study):
    known = variants_of(study.preset)
    assert learning_rates(study, known["bert-frozen"]) == [1e-3, 3e-3]
    assert learning_rates(study, known["bert"]) == [1e-4, 3e-4]
    assert finetune_dir(study, known["bert"], study.specs[0], 2, 3e-4).parts[-2:] == ("lr-0.0003", "seed-2")


@pytest.mark.parametrize("preset, features", [("tiny", "scalar-mix"), ("mini", "concat-last-4")])
def test_the_frozen_rows_label_names_the_features_its_runs_use(study, preset, features):
    # a 2-layer model has no last 4 layers to concatenate: its frozen rows mix all layers, and the table says so
    from bertforge.ablation.run import _finetune_args

    known = variants_of(preset)
    assert known["bert-frozen"].label == f"BERT frozen, {features} + BiLSTM"
    at_preset = dataclasses.replace(study, preset=preset)
    for name in ("bert-frozen", "mask-80-10-10-features"):
        _, args, fell_back = _finetune_args(at_preset, known[name], at_preset.specs[0], 1, 1e-3)
        assert args.features == features and args.freeze_encoder and fell_back == (features == "scalar-mix")


def test_random_plus_bilstm_is_the_control_of_the_bilstm_rows(study):
    control = variants_of(study.preset)["random+bilstm"]
    assert control.model_source == "random" and control.finetune == {"head_bilstm": True} and not control.frozen
    assert [v.name for v in select_variants(["main"], "tiny")].count("random+bilstm") == 1


@pytest.mark.parametrize("flag, grid", [("finetune_lr", [1e-4, 0.0]), ("feature_lr", [-1e-3])])
def test_a_grid_with_a_non_positive_rate_is_refused(study, flag, grid):
    with pytest.raises(UsageError, match=f"--{flag.replace('_', '-')}: must be > 0"):
        Study(**{**{k: getattr(study, k) for k in ("corpus", "task", "out")}, flag: grid})


def test_a_flop_budget_gives_every_row_the_bert_rows_flops_and_says_what_is_not_counted(study):
    from bertforge.ablation.plan import Study
    from bertforge.ablation.report import _flops, _pretraining
    from bertforge.ablation.run import model_root, pretrain_args

    flops = Study(**{**{k: getattr(study, k) for k in ("corpus", "task", "out")}, "budget": "flops",
                     "variants": ["main"]})
    known = variants_of(flops.preset)
    bert = model_root(flops, known["bert"])
    bert.mkdir(parents=True)
    (bert / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0, "flops": s * 1.5e9}) + "\n"
                                                for s in (10, 20)))
    tokenizer = study.root / "tok"
    assert pretrain_args(flops, known["ltr"], tokenizer).max_flops == 3e10  # the BERT row's last count
    assert pretrain_args(flops, known["bert"], tokenizer).max_flops is None  # it sets the budget by its steps
    assert pretrain_args(study, known["ltr"], tokenizer).max_flops is None  # --budget steps
    assert _flops({"kind": "word2vec", "pretrain": {}}) == "not counted (gensim's word2vec)"
    assert _flops({"kind": "random", "pretrain": {}}) == "0 (no pre-training)"
    assert _flops({"kind": "pretrain", "pretrain": {"flops": 3e10}}) == "3e+10"
    # a row that stopped at the budget says so, with its steps: the table's title gives the other rows' steps
    assert _flops({"kind": "pretrain", "pretrain": {"flops": 3.1e10, "max_flops": 3e10, "steps": 1053}}) == (
        "3.1e+10 (to a budget of 3e+10: 1,053 steps)")
    ltr = model_root(flops, known["ltr"])
    ltr.mkdir(parents=True)
    (ltr / "run_config.json").write_text(json.dumps({"objective": "ltr", "max_flops": 3e10}))
    (ltr / "metrics.jsonl").write_text(json.dumps({"step": 7, "tokens_seen": 70, "tokens_per_s": 5.0,
                                                   "flops": 3.1e10}) + "\n")
    assert _flops({"kind": "pretrain", "pretrain": _pretraining(ltr)}) == "3.1e+10 (to a budget of 3e+10: 7 steps)"
    assert "max_flops" not in _pretraining(bert)  # no run_config: trained by the study's steps
    with pytest.raises(UsageError, match="--budget"):
        Study(**{**{k: getattr(study, k) for k in ("corpus", "task", "out")}, "budget": "tokens"})


def test_a_finished_run_is_reused_only_with_the_studys_settings(study, tmp_path):
    """A study rerun with another --epochs (or grid, batch, sequence length...) on the same --out would mix two
    protocols in one table: the finished run made the other way is an error naming what differs."""
    from bertforge.ablation.run import _finetune
    from bertforge.errors import CheckpointError

    bert = variants_of(study.preset)["bert"]
    fake_run(study, bert, 1e-4, 1, 0.6, 0.6, [0.6])
    run = finetune_dir(study, bert, study.specs[0], 1, 1e-4)
    logged = []
    saved = {"epochs": study.epochs, "lr": 1e-4, "batch_size": study.finetune_batch_size,
             "max_train_examples": study.max_train_examples, "freeze_encoder": False, "head_bilstm": False,
             "features": "concat-last-4", "data": {"max_length": study.max_length}}
    (run / "finetune_args.json").write_text(json.dumps(saved))
    _finetune(study, bert, study.specs[0], 1, 1e-4, logged.append)  # the same settings: reused, nothing runs
    assert logged == []
    (run / "finetune_args.json").write_text(json.dumps({**saved, "epochs": study.epochs + 5}))
    with pytest.raises(CheckpointError, match=rf"fine-tuned with epochs {study.epochs + 5} \(this study: "
                                              rf"{study.epochs}\).*another --out"):
        _finetune(study, bert, study.specs[0], 1, 1e-4, logged.append)
    (run / "finetune_args.json").unlink()
    with pytest.raises(CheckpointError, match="without finetune_args.json"):
        _finetune(study, bert, study.specs[0], 1, 1e-4, logged.append)
    assert logged == [] and (run / "eval_results.json").is_file()  # nothing was run or removed


def test_a_study_run_in_pieces_reports_the_rows_of_earlier_pieces_made_its_way(study):
    """`--variants bert-frozen` after an earlier `--variants bert random` on the same --out: the table has all
    three rows; a row fine-tuned with other settings is left out, and the table says why."""
    from bertforge.ablation.run import _rows_run_before

    study = Study(**{k: getattr(study, k) for k in ("corpus", "task", "out", "seeds", "finetune_lr", "feature_lr")},
                  variants=["bert-frozen"])
    known = variants_of(study.preset)

    def finished(variant, lr, epochs):
        fake_run(study, known[variant], lr, 1, 0.6, 0.6, [0.6])
        run = finetune_dir(study, known[variant], study.specs[0], 1, lr)
        (run / "finetune_args.json").write_text(json.dumps({
            "epochs": epochs, "lr": lr, "batch_size": study.finetune_batch_size,
            "max_train_examples": study.max_train_examples, "freeze_encoder": False, "head_bilstm": False,
            "features": "concat-last-4", "data": {"max_length": study.max_length}}))

    finished("bert", 1e-4, study.epochs)
    finished("random", 3e-4, study.epochs + 5)
    rows, left_out = _rows_run_before(study)  # the study asked for bert-frozen only
    assert [v.name for v in rows] == ["bert"]
    assert len(left_out) == 1 and left_out[0].startswith("random: ") and "epochs" in left_out[0]
    results = {"settings": {**vars(study), "tasks": []}, "variants": {}, "claims": [], "left_out": left_out}
    assert "left out of the table: random: " in markdown(study, results)


def test_a_finished_pre_training_is_reused_only_with_the_studys_settings(study, tmp_path):
    """A rerun on the same --out with another corpus or --steps would report the old model under the new
    settings: the finished row made the other way is an error naming what differs."""
    import dataclasses

    from bertforge.ablation.run import _pretrain, model_root, pretrain_args
    from bertforge.errors import CheckpointError

    bert = variants_of(study.preset)["bert"]
    args = pretrain_args(study, bert, tmp_path / "tok")
    root = model_root(study, bert)
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    saved = dataclasses.asdict(args)
    (root / "run_config.json").write_text(json.dumps(saved))
    _pretrain(study, bert, tmp_path / "tok", print)  # the same settings: reused, nothing runs
    (root / "run_config.json").write_text(json.dumps({**saved, "max_steps": study.steps + 1000,
                                                      "corpus": [str(tmp_path / "other.txt")]}))
    with pytest.raises(CheckpointError, match=rf"pre-trained with corpus .*other\.txt.*max_steps {study.steps + 1000} "
                                              rf"\(this study: {study.steps}\).*another --out"):
        _pretrain(study, bert, tmp_path / "tok", print)


def test_a_finished_row_made_with_another_variant_setting_is_not_reused(study, tmp_path):
    """The settings that make a variant what it is (the span row's masking rate) are checked too: a span row
    pre-trained at the recipe's 40% must not be reported as the study's 15% SpanBERT row."""
    import dataclasses

    from bertforge.ablation.run import _pretrain, model_root, pretrain_args
    from bertforge.errors import CheckpointError

    spans = variants_of(study.preset)["spans"]
    args = pretrain_args(study, spans, tmp_path / "tok")
    assert args.mask_spans and args.masked_lm_prob == 0.15
    root = model_root(study, spans)
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    saved = dataclasses.asdict(args)
    (root / "run_config.json").write_text(json.dumps(saved))
    _pretrain(study, spans, tmp_path / "tok", print)  # made the study's way: reused
    (root / "run_config.json").write_text(json.dumps({**saved, "masked_lm_prob": 0.4}))
    with pytest.raises(CheckpointError, match=r"pre-trained with masked_lm_prob 0\.4 \(this study: 0\.15\)"):
        _pretrain(study, spans, tmp_path / "tok", print)


def test_a_flop_budget_row_warms_up_for_berts_share_and_is_reused_by_its_budget(study, tmp_path):
    """Under --budget flops a row's steps are known once its FLOPs per step are counted: BERT's warm-up in
    steps could outlast a costlier row's whole run (its rate would only rise), so it warms up for BERT's share
    of its own steps; and its finished run, whose steps the budget decided, is reused by budget, not by steps."""
    from bertforge.ablation.run import _pretrain, model_root, pretrain_args
    from bertforge.errors import CheckpointError

    flops = Study(**{**{k: getattr(study, k) for k in ("corpus", "task", "out")}, "budget": "flops", "steps": 1000,
                     "warmup_steps": 200, "variants": ["ltr"]})
    known = variants_of(flops.preset)
    bert = model_root(flops, known["bert"])
    bert.mkdir(parents=True)
    (bert / "metrics.jsonl").write_text(json.dumps({"step": 1000, "loss": 1.0, "flops": 3e12}) + "\n")
    ltr = known["ltr"]
    args = pretrain_args(flops, ltr, tmp_path / "tok")
    assert (args.max_flops, args.warmup_share) == (3e12, 0.2)
    args.max_steps = 400  # what the counted FLOPs per step make of the budget (pretrain's _setup)
    args.resolve_warmup()
    assert args.warmup_steps == 80  # 20% of its own 400 steps, not BERT's 200
    root = model_root(flops, ltr)
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text(json.dumps({"model_type": flops.arch}))
    saved = dataclasses.asdict(args)
    (root / "run_config.json").write_text(json.dumps(saved))
    _pretrain(flops, ltr, tmp_path / "tok", print)  # 400 steps, 80 warm-up: the budget's, so reused
    (root / "run_config.json").write_text(json.dumps({**saved, "max_flops": 6e12}))
    with pytest.raises(CheckpointError, match=r"pre-trained with max_flops 6000000000000\.0 "
                                              r"\(this study: 3000000000000\.0\)"):
        _pretrain(flops, ltr, tmp_path / "tok", print)
    (root / "run_config.json").write_text(json.dumps(saved))
    steps = Study(**{**{k: getattr(study, k) for k in ("corpus", "task", "out")}, "steps": 1000, "variants": ["ltr"]})
    with pytest.raises(CheckpointError, match=r"max_steps 400 \(this study: 1000\), max_flops 3000000000000\.0 "
                                              r"\(this study: None\)"):
        _pretrain(steps, ltr, tmp_path / "tok", print)  # --budget steps does not take a budget row as its own
