"""Fine-tuning end to end on small synthetic tasks with a small random model: every task family runs
through finetune, evaluate and predict; learnable tasks are learned; bad input fails clearly."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import main as cli
from bertforge.config import BertConfig
from bertforge.model import BertForPreTraining
from bertforge.tasks import DataOptions
from bertforge.inference import Predictor
from bertforge.train.finetune import FinetuneArgs, finetune
from bertforge.train.logs import read_metrics
from bertforge.vocab import train_vocab

POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "sad"]
FILLER = "the a movie film plot actor was is very quite and but it this story".split()
NAMES = ["Alice", "Bob", "Carol", "Dave"]


def sentence(rng, extra):
    words = rng.sample(FILLER, 5) + [extra]
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fetched):
    """A 'pre-trained' model: random weights (4 layers, H=64), a vocabulary of the synthetic words."""
    d = tmp_path_factory.mktemp("model")
    text = " ".join(POSITIVE + NEGATIVE + FILLER + NAMES + ["lives", "in", "Paris", "London", "."] * 5)
    tok = train_vocab([text] * 20 + [(fetched("allennlp-fixtures") / "squad.json").read_text()], 400,
                      min_frequency=1)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    BertForPreTraining(BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=4,
                                  num_attention_heads=2, intermediate_size=128, max_position_embeddings=256)
                       ).save_pretrained(d)
    return d


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    d, rng = tmp_path_factory.mktemp("sentiment"), random.Random(0)
    def rows(n):
        out = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            out.append({"text": sentence(rng, rng.choice(POSITIVE if label == "pos" else NEGATIVE)), "label": label})
        return out
    return write_jsonl(d / "train.jsonl", rows(320)), write_jsonl(d / "dev.jsonl", rows(60))


def args(model_dir, train, dev, out, **kw):
    base = dict(task="classify", model=str(model_dir), train=str(train), dev=str(dev), out=str(out), epochs=4,
                lr=2e-3, batch_size=16, dropout=0.0, progress=False)
    return FinetuneArgs(**{**base, **kw})


def reference(hf, model, texts: list[str]) -> list[dict]:
    """What predict writes for ``texts``, computed with transformers from the saved model: the argmax label
    and its softmax probability (approximately: float32 on both sides)."""
    net = hf.BertForSequenceClassification.from_pretrained(model).eval()
    tokenizer = hf.BertTokenizer.from_pretrained(model)
    out = []
    with torch.no_grad():
        for text in texts:
            probs = net(**tokenizer(text, return_tensors="pt")).logits[0].softmax(-1)
            out.append({"label": net.config.id2label[int(probs.argmax())], "score": pytest.approx(probs.max().item(),
                                                                                                  abs=1e-5)})
    return out


def test_classification_learns_and_round_trips_through_evaluate_and_predict(model_dir, sentiment, tmp_path, hf):
    train, dev = sentiment
    summary = finetune(args(model_dir, train, dev, tmp_path / "run", seeds=[1, 2]))
    assert summary["accuracy"] > 0.9 and summary["split"] == "dev"
    assert set(summary["per_seed"]) == {"1", "2"} and "accuracy_std" in summary
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["accuracy"] == summary["accuracy"] and {"macro_f1", "mcc", "f1"} <= set(saved)
    assert (tmp_path / "run" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert any("loss" in json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open())
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["architectures"] == ["BertForSequenceClassification"]
    theirs = hf.BertForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert theirs.config.id2label == {0: "neg", 1: "pos"}

    best = summary["per_seed"][str(saved["best_seed"])]["dev"]["accuracy"]
    assert Predictor.load(tmp_path / "run" / "model").evaluate(dev, DataOptions())["accuracy"] == pytest.approx(best)
    inputs = tmp_path / "in.txt"
    inputs.write_text("the movie was very good\n" + json.dumps({"text": "the plot is awful"}) + "\n")
    assert Predictor.load(tmp_path / "run" / "model").predict_file(inputs, tmp_path / "out.jsonl", DataOptions()) == 2
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["label"] for x in lines] == ["pos", "neg"]
    assert lines == reference(hf, tmp_path / "run" / "model", ["the movie was very good", "the plot is awful"])


def test_the_report_reuses_the_best_epochs_dev_predictions(model_dir, sentiment, tmp_path, monkeypatch):
    """The dev set is predicted once per epoch and seed, never again for the report, and the report gets the
    best seed's best epoch: its accuracy is that seed's dev accuracy."""
    from bertforge.tasks.classify import ClassifyTask
    from bertforge.train import finetune as recipe

    train, dev = sentiment
    calls, reported = [], []
    predict = recipe.predict_examples
    monkeypatch.setattr(recipe, "predict_examples", lambda *a, **k: calls.append(len(a[3])) or predict(*a, **k))
    monkeypatch.setattr(ClassifyTask, "report", lambda self, out, examples, predictions, labels:
                        reported.append([p == str(e.label) for p, e in zip(predictions, examples)]))
    drawn, plot = [], recipe.plot_curves
    monkeypatch.setattr(recipe, "plot_curves", lambda *a, **k: drawn.append(plot(*a, **k)))
    summary = finetune(args(model_dir, train, dev, tmp_path / "run", seeds=[1, 2], epochs=2))
    assert calls == [60] * 4  # 2 seeds x 2 epochs, the 60 dev examples each time
    assert "accuracy" in drawn[0] and not {"seed", "epoch", "elapsed_s", "step"} & set(drawn[0])  # metrics only
    best = summary["per_seed"][str(summary["best_seed"])]["dev"]["accuracy"]
    assert len(reported) == 1 and sum(reported[0]) / 60 == pytest.approx(best)


def test_cli_finetune_evaluate_predict(model_dir, sentiment, tmp_path, capsys, hf):
    train, dev = sentiment
    cli(["finetune", "--task", "classify", "--model", str(model_dir), "--train", str(train), "--dev", str(dev),
         "--out", str(tmp_path / "run"), "--epochs", "1", "--lr", "2e-3", "--no-progress"])
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["split"] == "dev" and results["seeds"] == [1]
    assert f"dev (1 seed(s)): accuracy {results['accuracy']:.4f} ± 0.0000" in printed
    cli(["evaluate", "--model", str(tmp_path / "run" / "model"), "--data", str(dev), "--output",
         str(tmp_path / "m.json")])
    evaluated = json.loads((tmp_path / "m.json").read_text())
    assert evaluated["examples"] == 60
    assert json.loads(capsys.readouterr().out) == evaluated  # printed and written alike
    assert evaluated["accuracy"] == pytest.approx(results["accuracy"])  # the run scored the same dev file
    (tmp_path / "in.txt").write_text("good\nbad\nfine\n")
    cli(["predict", "--model", str(tmp_path / "run" / "model"), "--input", str(tmp_path / "in.txt"),
         "--output", str(tmp_path / "p.jsonl")])
    assert capsys.readouterr().out.strip() == f"wrote 3 predictions to {tmp_path / 'p.jsonl'}"
    predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert predictions == reference(hf, tmp_path / "run" / "model", ["good", "bad", "fine"])


@pytest.mark.slow
def test_cli_finetune_compile_learns_and_starts_from_the_eager_loss(model_dir, sentiment, tmp_path):
    """`finetune --compile` end to end: its first losses equal eager ones (no dropout; the compiled graph
    runs padded, eager unpadded), and it learns the task."""
    train, dev = sentiment
    losses = {}
    for name, flags in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        cli(["finetune", "--task", "classify", "--model", str(model_dir), "--train", str(train), "--dev", str(dev),
             "--out", str(out), "--epochs", "3", "--lr", "2e-3", "--dropout", "0", "--log-every", "1",
             "--no-progress", *flags])
        records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
        losses[name] = [r["loss"] for r in records if "loss" in r][:3]
        assert json.loads((out / "eval_results.json").read_text())["accuracy"] > 0.9, name
        assert json.loads((out / "finetune_args.json").read_text())["compile"] is (name == "compiled")
    assert losses["compiled"] == pytest.approx(losses["eager"], abs=1e-4)


def test_regression(model_dir, tmp_path):
    rng = random.Random(1)
    rows = lambda n: [{"text": sentence(rng, w), "label": 1.0 if w in POSITIVE else -1.0}
                      for w in (rng.choice(POSITIVE + NEGATIVE) for _ in range(n))]
    train, dev = write_jsonl(tmp_path / "t.jsonl", rows(200)), write_jsonl(tmp_path / "d.jsonl", rows(40))
    summary = finetune(args(model_dir, train, dev, tmp_path / "run", task="regress"))
    assert summary["pearson"] > 0.8 and {"spearman", "mse"} <= set(summary)


def test_tagging_and_frozen_feature_based_variant(model_dir, tmp_path):
    rng = random.Random(2)
    def sentences(n):
        out = []
        for _ in range(n):
            name, city = rng.choice(NAMES), rng.choice(["Paris", "London"])
            words = [name, "lives", "in", city, "."]
            tags = ["B-PER", "O", "O", "B-LOC", "O"]
            out.append("".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\n")
        return "".join(out)
    (tmp_path / "train.conll").write_text(sentences(150))
    (tmp_path / "dev.conll").write_text(sentences(30))
    common = dict(task="tag", train=tmp_path / "train.conll", dev=tmp_path / "dev.conll", epochs=3,
                  data=DataOptions(format="conll"))
    full = finetune(args(model_dir, **common, out=tmp_path / "full"))
    assert full["f1"] > 0.9 and {"precision", "recall"} <= set(full)
    frozen = finetune(args(model_dir, **common, out=tmp_path / "frozen", freeze_encoder=True,
                           features="concat-last-4", lr=1e-2))
    assert frozen["f1"] > 0.5
    before = BertForPreTraining.from_pretrained(model_dir).bert.encoder.layer[3].output.dense.weight
    state = load_file(tmp_path / "frozen" / "model" / "model.safetensors")
    [encoder_key] = [k for k in state if k.endswith("bert.encoder.layer.3.output.dense.weight")]
    assert torch.equal(state[encoder_key], before)  # the encoder never moved
    [head_key] = [k for k in state if k == "classifier.weight" or k.endswith(".classifier.weight")]
    assert state[head_key].shape == (3, 4 * 64)  # concat of the last four layers
    (tmp_path / "in.txt").write_text("Carol lives in London .\n")
    Predictor.load(tmp_path / "full" / "model").predict_file(tmp_path / "in.txt", tmp_path / "p.jsonl", DataOptions())
    assert json.loads((tmp_path / "p.jsonl").read_text())["tags"] == ["B-PER", "O", "O", "B-LOC", "O"]


@pytest.fixture(scope="module")
def elmo_dir(tmp_path_factory, model_dir):
    """A random ELMo biLM over the synthetic words' pieces (ELMo is only ever fine-tuned frozen)."""
    from bertforge.model.elmo import ElmoBiLM, ElmoConfig
    from bertforge.tokenization import BertTokenizer

    d = tmp_path_factory.mktemp("elmo")
    torch.manual_seed(0)
    ElmoBiLM(ElmoConfig(char_embedding_dim=4, filters=[[1, 8], [2, 8], [3, 16]], max_characters_per_token=12,
                        n_highway=1, lstm_dim=24, n_layers=2, projection_dim=8, dropout=0.0)).save_pretrained(d)
    BertTokenizer.from_pretrained(model_dir).save_pretrained(d)
    return d


@pytest.mark.parametrize("encoder", ["bert-scalar-mix", "bert-concat-last-4", "elmo"])
def test_a_frozen_encoder_runs_once_and_training_equals_running_it_at_every_step(encoder, model_dir, elmo_dir,
                                                                                 sentiment, tmp_path, capsys):
    model, frozen = (elmo_dir, {}) if encoder == "elmo" else (
        model_dir, dict(freeze_encoder=True, features=encoder.removeprefix("bert-"), head_bilstm=True))
    losses, results = {}, {}
    for gb in (4.0, 0.0):  # kept for every epoch and seed, and not kept
        out = tmp_path / f"cache-{gb}"
        results[gb] = finetune(args(model, *sentiment, out, epochs=2, seeds=[1, 2], lr=1e-2, log_every=1,
                                    feature_cache_gb=gb, dropout=0.1, **frozen))
        assert ("frozen features computed once for 320 training inputs" in capsys.readouterr().out) == (gb > 0)
        losses[gb] = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(losses[0.0]) == 2 * 2 * 20  # seeds x epochs x steps
    assert losses[4.0] == pytest.approx(losses[0.0], rel=1e-4, abs=1e-6)
    assert losses[4.0][0] != losses[4.0][-1]  # it trained
    assert results[4.0]["accuracy"] == pytest.approx(results[0.0]["accuracy"])

    finetune(args(model, *sentiment, tmp_path / "too-big", epochs=1, seeds=[1, 2], feature_cache_gb=1e-6, **frozen))
    assert capsys.readouterr().out.count("frozen features not kept") == 1  # said once a run, not once a seed


def test_qa_and_multiple_choice_run_end_to_end(model_dir, tmp_path, fetched):
    squad = fetched("allennlp-fixtures") / "squad.json"
    opts = DataOptions(max_length=96, doc_stride=32)
    summary = finetune(args(model_dir, squad, squad, tmp_path / "qa", task="qa", epochs=2, data=opts))
    assert summary["split"] == "dev" and summary["total"] == 5
    evaluated = Predictor.load(tmp_path / "qa" / "model").evaluate(squad, opts)
    # the saved model, reloaded, gives exactly the run's own dev figures
    assert (evaluated["total"], evaluated["exact_match"], evaluated["f1"]) == (
        5, pytest.approx(summary["exact_match"]), pytest.approx(summary["f1"]))
    context = "Alice lives in Paris."
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "Who lives in Paris?", "context": context}) + "\n")
    Predictor.load(tmp_path / "qa" / "model").predict_file(tmp_path / "q.jsonl", tmp_path / "a.jsonl", DataOptions())
    answer = json.loads((tmp_path / "a.jsonl").read_text())["answer"]
    # a SQuAD v1.1 model always answers: a non-empty span of the context from a token's start to a token's end
    starts, ends = {0, 6, 12, 15, 20}, {5, 11, 14, 20, 21}  # Alice lives in Paris .
    assert any(context[i:j] == answer for i in starts for j in ends if j > i), answer

    # the right ending is the sentiment word, at a random position: always answering 0 scores ~1/4
    rng = random.Random(4)
    header = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"

    def swag(path, n, first_id):
        rows = []
        for i in range(first_id, first_id + n):
            endings = rng.sample(["the", "a", "it", "this"], 3)
            label = rng.randrange(4)
            endings.insert(label, rng.choice(POSITIVE + NEGATIVE))
            rows.append(f"v{i},{i},x,She felt,so she said,gold,{','.join(endings)},{label}\n")
        path.write_text(header + "".join(rows))
        return path

    train, dev = swag(tmp_path / "train.csv", 80, 0), swag(tmp_path / "dev.csv", 30, 1000)
    assert sum(line.endswith(",0") for line in dev.read_text().splitlines()) < 15
    summary = finetune(args(model_dir, train, dev, tmp_path / "mc", task="choice", epochs=3))
    assert summary["accuracy"] > 0.9  # on held-out questions


def test_bad_input_is_a_clear_error(model_dir, sentiment, tmp_path):
    train, dev = sentiment
    unseen = write_jsonl(tmp_path / "unseen.jsonl", [{"text": "good", "label": "pos"}, {"text": "x", "label": "meh"}])
    with pytest.raises(ValueError, match=r"unseen.jsonl: label\(s\) 'meh' never seen.*known labels: 'neg', 'pos'"):
        finetune(args(model_dir, train, unseen, tmp_path / "a"))
    (tmp_path / "missing.jsonl").write_text('{"text": "good", "label": "pos"}\n{"txt": "bad", "label": "neg"}\n')
    with pytest.raises(ValueError, match=r"missing.jsonl:2.*'text'"):
        finetune(args(model_dir, tmp_path / "missing.jsonl", dev, tmp_path / "b"))
    (tmp_path / "broken.jsonl").write_text('{"text": "good", "label": "pos"}\n{"text": "bad", \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2"):
        finetune(args(model_dir, tmp_path / "broken.jsonl", dev, tmp_path / "c"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl"):
        finetune(args(model_dir, tmp_path / "empty.jsonl", dev, tmp_path / "d"))


def test_head_size_mismatch_needs_ignore_mismatched_sizes(model_dir, sentiment, tmp_path):
    train, dev = sentiment
    finetune(args(model_dir, train, dev, tmp_path / "two", epochs=1))
    rng = random.Random(3)
    three = [{"text": sentence(rng, w), "label": lab} for w, lab in
             [(rng.choice(POSITIVE), "pos"), (rng.choice(NEGATIVE), "neg"), ("the", "neutral")] * 20]
    t3 = write_jsonl(tmp_path / "three.jsonl", three)
    with pytest.raises(ValueError, match="classifier head has 2 labels but the training data has 3.*--ignore-mismatched-sizes"):
        finetune(args(tmp_path / "two" / "model", t3, t3, tmp_path / "x", epochs=1))
    assert not (tmp_path / "x" / "model").exists()
    with pytest.warns(UserWarning, match="classifier.weight"):
        finetune(args(tmp_path / "two" / "model", t3, t3, tmp_path / "y", epochs=1, ignore_mismatched_sizes=True))
    config = json.loads((tmp_path / "y" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"}
    assert load_file(tmp_path / "y" / "model" / "model.safetensors")["classifier.weight"].shape == (3, 64)


def test_two_gloo_processes_fine_tune_as_one_with_twice_the_batch_and_accumulation_too(model_dir, sentiment,
                                                                                       tmp_path):
    """Fine-tuning shares pre-training's runtime: DDP through torchrun and --grad-accum give the update of the
    undivided batch (the loss is the mean over the global batch's examples)."""
    import os
    import subprocess
    import sys

    train, dev = sentiment
    common = ["finetune", "--task", "classify", "--model", str(model_dir), "--train", str(train), "--dev", str(dev),
              "--epochs", "1", "--lr", "1e-3", "--dropout", "0", "--max-train-examples", "64", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {"one": [sys.executable, "-m", "bertforge", *common, "--batch-size", "16", "--out", str(tmp_path / "one")],
            "accum": [sys.executable, "-m", "bertforge", *common, "--batch-size", "8", "--grad-accum", "2",
                      "--out", str(tmp_path / "accum")],
            "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                    "bertforge", *common, "--batch-size", "8", "--out", str(tmp_path / "two")]}
    for name, argv in runs.items():
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, name + done.stdout[-2000:] + done.stderr[-2000:]
    weights = {name: load_file(tmp_path / name / "model" / "model.safetensors") for name in runs}
    start = load_file(model_dir / "model.safetensors")
    moved = max((weights["one"][k] - start["bert." + k if "bert." + k in start else k]).abs().max().item()
                for k in weights["one"] if (k in start or "bert." + k in start))
    assert moved > 1e-4  # the update is real
    for name in ("accum", "two"):
        assert max((weights["one"][k] - weights[name][k]).abs().max().item() for k in weights["one"]) < 1e-5, name


def test_a_squad_v2_model_answers_no_answer_through_predict_and_evaluate(model_dir, tmp_path):
    """SQuAD 2.0 is recorded in the model's config at fine-tuning, so predict (whose inputs carry no
    is_impossible flag) can answer "" too."""
    context = "Alice lives in Paris . Bob lives in London ."
    data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": f"q{i}", "question": f"Where does {who} live ?", "is_impossible": who not in context,
         "answers": [] if who not in context else [{"text": city, "answer_start": context.index(city)}]}
        for i, (who, city) in enumerate([("Alice", "Paris"), ("Bob", "London"), ("Carol", ""), ("Dave", "")] * 4)]}]}]}
    squad = tmp_path / "v2.json"
    squad.write_text(json.dumps(data))
    finetune(FinetuneArgs(task="qa", model=str(model_dir), train=str(squad), dev=str(squad), out=str(tmp_path / "qa"),
                          epochs=1, lr=1e-3, batch_size=8, progress=False, data=DataOptions(max_length=64)))
    config = json.loads((tmp_path / "qa" / "model" / "config.json").read_text())
    assert config["bertforge_squad_v2"] is True
    questions = tmp_path / "q.jsonl"
    write_jsonl(questions, [{"question": "Where does Carol live ?", "context": context}])
    predictor = Predictor.load(tmp_path / "qa" / "model")
    # a threshold below any score difference: the null answer always wins on a v2 model
    predictor.predict_file(questions, tmp_path / "a.jsonl", DataOptions(max_length=64, null_threshold=-1e9))
    assert json.loads((tmp_path / "a.jsonl").read_text())["answer"] == ""
    predictor.predict_file(questions, tmp_path / "b.jsonl", DataOptions(max_length=64, null_threshold=1e9))
    assert json.loads((tmp_path / "b.jsonl").read_text())["answer"] != ""  # never null: a span of the context
    assert predictor.evaluate(squad, DataOptions(max_length=64, null_threshold=-1e9))["exact_match"] == 50.0
