"""The main job until pre-training lands: real weights, real text, numbers out."""

from __future__ import annotations

import time

import torch

from bertforge.data.fetch import fetch
from bertforge.inference import encode
from bertforge.model import BertModel
from bertforge.tokenization import BertTokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is making music on a stringed instrument.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "A cat sleeps on the warm windowsill.",
]


def run_demo() -> None:
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
