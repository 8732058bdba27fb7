"""The main job: pre-train a mini BERT on real text for about 10 minutes, and show what it learned.

`bertforge demo --minilm` instead shows the real all-MiniLM-L6-v2 weights at work.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bertforge.data.fetch import fetch
from bertforge.data.prepare import special_ids
from bertforge.data.pretraining_data import InstanceStore, eval_batches
from bertforge.inference import encode, fill_mask
from bertforge.objectives import MaskedLM, Objective
from bertforge.model import BertForPreTraining, BertModel
from bertforge.train.pretrain import PretrainArgs, pretrain
from bertforge.tokenization import BertTokenizer

FILL_MASK = [
    "The capital of France is [MASK].",
    "He was born in 1950 and [MASK] at the university of Oxford.",
    "The United [MASK] of America declared independence in 1776.",
    "Water is made of hydrogen and [MASK].",
]

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is making music on a stringed instrument.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "A cat sleeps on the warm windowsill.",
]


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


def unigram_accuracy(data_dir: Path, objective: Objective, batch_size: int, max_instances: int) -> float:
    """MLM accuracy of always guessing the corpus's most frequent non-special token."""
    train = InstanceStore(data_dir, "train")
    rows = train.rows(np.arange(len(train)))
    counts = np.bincount(rows["tokens"].ravel().astype(np.int64), minlength=objective.special.vocab_size)
    counts[list(objective.special.all)] = 0
    guess = int(counts.argmax())
    labels = torch.cat([b["labels"][b["labels"] != -100]
                        for b in eval_batches(InstanceStore(data_dir, "eval"), objective, batch_size, max_instances)])
    return float((labels == guess).float().mean())


def run_demo(out: str = "runs/demo", max_steps: int | None = None) -> None:
    max_steps = max_steps or 500
    torch.manual_seed(0)
    gensim = fetch("gensim-data")
    corpus = [gensim / "enwiki-sample.xml.bz2", gensim / "lee_background.cor"]
    args = PretrainArgs(corpus=[str(p) for p in corpus], out=out, vocab_size=8000, preset="mini", seq_len=128,
                        batch_size=32, max_steps=max_steps, lr=1e-3, warmup_steps=max_steps // 10,
                        save_every=50, eval_every=50, eval_instances=512, seed=12345)
    print(f"\nPre-training a 'mini' BERT (4 layers, H=256) on {', '.join(p.name for p in corpus)}: "
          f"{max_steps} steps of 32 x 128 tokens, MLM + NSP, logs in {out}/")
    start = time.perf_counter()
    result = pretrain(args)
    if result["status"] != "done":
        return
    first, last = result["first_eval"], result["final_eval"]
    tokenizer = BertTokenizer.from_pretrained(result["model"])
    objective = MaskedLM(special_ids(tokenizer), args.seed)
    unigram = unigram_accuracy(Path(out) / "data", objective, args.batch_size, args.eval_instances)
    print(f"\nDone in {(time.perf_counter() - start) / 60:.1f} min. Held-out masked-LM accuracy "
          f"(documents never trained on):")
    print(f"  random initialisation      {first['eval_mlm_accuracy']:6.1%}   perplexity {first['eval_perplexity']:8.1f}")
    print(f"  unigram (most frequent)    {unigram:6.1%}")
    print(f"  pre-trained, step {result['step']:<7}  {last['eval_mlm_accuracy']:6.1%}   perplexity "
          f"{last['eval_perplexity']:8.1f}   (NSP accuracy {last['eval_nsp_accuracy']:.1%})")
    print(f"  curves: {result['curves']}   metrics: {result['metrics']}   model: {result['model']}")
    model = BertForPreTraining.from_pretrained(result["model"])
    print(f"\nbertforge fill-mask --model {result['model']} ...")
    for text in FILL_MASK:
        guesses = fill_mask(model, tokenizer, text, top_k=5)[0]
        print(f"  {text}\n      -> " + "  ".join(f"{t} ({p:.2f})" for t, p in guesses))
