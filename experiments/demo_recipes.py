"""Which pre-training recipe gives `make demo` convincing evidence in ~10 CPU minutes?

One fixed evaluation for every recipe, built once by ``setup`` (written under runs/demo-recipes/eval/):

* Held-out text: the documents that the demo's own data preparation holds out (PrepareSettings:
  eval_fraction 0.05, seed 12345, 4 MiB chunks; the split is drawn per document before tokenisation,
  so it is the same for every tokenizer and sequence length; ``setup`` re-derives it with the library's
  reader and ``check`` verifies it against a prepared run), plus the 50-document Lee *test* file
  ``lee.cor`` (same cache directory, not in the training corpus). Wiki and news items are reported
  apart and together.
* Cloze items: in a held-out sentence (8-50 words), one whole word masked alone. The word is alphabetic,
  3+ letters, NOT among the 100 most frequent alphabetic words of the training documents, seen at least 3
  times in them, and a single WordPiece in every tokenizer compared (the 8000- and 4096-piece vocabularies
  trained on the corpus and MiniLM's 30,522), so every recipe predicts exactly one token for the same
  items. One item per sentence, sentences and positions fixed by seed; at most 250 wiki + 250 news items, at most 3 per answer word and source.
* Baselines from the training documents, restricted to eligible answers (which makes them stronger):
  unigram (most frequent eligible word), bigram (most frequent eligible word after the left word) and
  left+right (count of (left, w, right), then P(w|left)P(right|w), then unigram). The model predicts
  over its whole vocabulary (no restriction).
* Fill-mask probes whose answers occur in the training text.

Run one recipe per invocation, one at a time (OMP_NUM_THREADS=1 on a shared 2-core machine):

    .venv/bin/python experiments/demo_recipes.py setup
    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo_recipes.py run a_demo
    .venv/bin/python experiments/demo_recipes.py eval a_demo          # re-evaluate a finished run
    .venv/bin/python experiments/demo_recipes.py list                 # recipes and their CLI commands
    .venv/bin/python experiments/demo_recipes.py table                # summary of runs/demo-recipes/*.json
    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo_recipes.py bench a_demo c3_minilm_s64_b16   # step cost
    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo_recipes.py headwarm   # (d) frozen encoder, head only

Results (2-core machine shared with other jobs, 1 thread; idle minutes from `bench`, a_demo = 1.0 s/step;
cloze over 498 items, top-1/top-5; baselines unigram 0.0/1.2, bigram 3.8/10.2, left+right 10.4/18.9):

    recipe                     steps  ~idle min  held-out MLM acc  cloze       fill-mask
    a_demo                       500     8.3        9.7%           0.0/0.0     the , . of and (every probe)
    b2_cram_s64                  500     7.7       12.1%           0.0/0.0     the , . of and (every probe)
    b5_tiny                     3000     8.2       12.9%           0.0/0.0     the , . of and (every probe)
    c1_minilm_lr1e-4             160    10.9       14.5%           0.4/3.0     topical nouns, rarely right
    c2_minilm_s64_lr5e-4         300     9.2       27.3%           3.8/15.5    moon, afghanistan, states...
    c3_minilm_s64_b16            600     9.4       27.9%           4.8/15.1    moon .34, states .80, afghanistan .18
    c4 (c3 at lr 1e-3)           600     9.4       25.0%           1.4/8.8     worse: the body is damaged

From scratch, no recipe tried leaves the unigram plateau in ~10 minutes: at [MASK] inputs a_demo's accuracy is
the unigram guess's (5.5% = 5.5%); its 9.7% comes from the 10% of masked positions whose token is left in
place (51% copied). Continued pre-training of MiniLM at lr 5e-4, seq 64 (c2/c3) is the only recipe whose
fill-mask uses context: on the cloze it beats unigram and bigram at top-5 (c3: 62 items only it gets vs 38
only bigram gets) but not a left+right n-gram guess (53 vs 72). MLM accuracies of c* runs are on their own
(MiniLM-tokenized, seq 64) held-out instances, so compare recipes by the cloze, not by that column.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from tokenizers import normalizers, pre_tokenizers

from bertforge.data.corpus import read_documents
from bertforge.data.fetch import fetch
from bertforge.data.prepare import PrepareSettings
from bertforge.inference import fill_mask
from bertforge.model import BertForPreTraining
from bertforge.tokenization import BertTokenizer
from bertforge.train.pretrain import PretrainArgs, pretrain

ROOT = Path("runs/demo-recipes")
EVAL = ROOT / "eval"
TOP_K_EXCLUDED = 100
MIN_TRAIN_COUNT = 3
ITEMS_PER_SOURCE = 250
ITEM_SEED = 2024
MAX_PER_ANSWER = 3  # items with the same answer word, per source
REFERENCE_VOCABS = (8000, 4096)  # trained on the corpus; MiniLM's vocabulary is the third reference

PROBES = [
    "The capital of France is [MASK].",
    "Abraham Lincoln was the sixteenth [MASK] of the United States.",
    "Apollo 11 landed on the [MASK] in July 1969.",
    "Water is made of hydrogen and [MASK].",
    "The Prime [MASK] said the government would not change its policy.",
    "Kabul is the capital of [MASK].",
    "The United [MASK] of America declared independence in 1776.",
    "He was born in [MASK] 1879 in a small town.",
    "The [MASK] Ocean separates Europe from America.",
    "Police say the man was taken to [MASK] with serious injuries.",
]


PROBE_ANSWERS = ["paris", "president", "moon", "oxygen", "minister", "afghanistan", "states", "march",
                 "atlantic", "hospital"]


def corpus_paths() -> list[Path]:
    g = fetch("gensim-data")
    return [g / "enwiki-sample.xml.bz2", g / "lee_background.cor"]


# ------------------------------------------------------------------------------------------ recipes

def _demo_args(**kw) -> dict:
    """demo.py's settings (PretrainArgs fields), with changes."""
    return {"vocab_size": 8000, "preset": "mini", "seq_len": 128, "batch_size": 32, "max_steps": 500, "lr": 1e-3,
            "warmup_steps": 50, "save_every": 100, "eval_every": 100, "eval_instances": 512, "seed": 12345, **kw}


MINILM = "@minilm"  # replaced by fetch("minilm") at run time


def _minilm_args(**kw) -> dict:
    """Continued pre-training of all-MiniLM-L6-v2 with its own tokenizer; the MLM head starts fresh."""
    return {"init_from": MINILM, "tokenizer": MINILM, "nsp": False, "eval_instances": 512, "seed": 12345, **kw}


# Step counts: each fits about 10 minutes of the idle 2-core machine (see `bench`; a_demo ~1.0 s/step).
RECIPES: dict[str, dict] = {
    # (a) today's demo (demo.py), except checkpoints/evals every 100 steps instead of 50
    "a_demo": _demo_args(),
    # (b) cramming-style changes (b1, b3, b4 defined but not run: b2 and b5 already showed the plateau)
    "b1_nonsp_nodrop": _demo_args(nsp=False, dropout=0.0),
    "b2_cram_s64": _demo_args(nsp=False, dropout=0.0, seq_len=64, batch_size=64, lr=2e-3, warmup_steps=250),
    "b3_cram_s64_v4k": _demo_args(nsp=False, dropout=0.0, seq_len=64, batch_size=64, lr=2e-3, warmup_steps=250,
                                  vocab_size=4096),
    "b4_cram_s128": _demo_args(nsp=False, dropout=0.0, lr=2e-3, warmup_steps=250),
    # (d) a much smaller model (2 layers, H=128) taking 6x the steps in the same time; and at a lower lr
    "b5_tiny": _demo_args(preset="tiny", nsp=False, dropout=0.0, lr=2e-3, warmup_steps=300, max_steps=3000,
                          save_every=500, eval_every=500),
    "b6_tiny_lr5e-4": _demo_args(preset="tiny", nsp=False, dropout=0.0, lr=5e-4, warmup_steps=150,
                                 max_steps=1500, save_every=500, eval_every=500),
    # (c) continued pre-training of all-MiniLM-L6-v2 (fresh MLM head)
    "c1_minilm_lr1e-4": _minilm_args(seq_len=128, batch_size=32, max_steps=160, lr=1e-4, warmup_steps=16,
                                     save_every=40, eval_every=40),
    "c2_minilm_s64_lr5e-4": _minilm_args(seq_len=64, batch_size=32, max_steps=300, lr=5e-4, warmup_steps=30,
                                         save_every=50, eval_every=50),
    "c3_minilm_s64_b16": _minilm_args(seq_len=64, batch_size=16, max_steps=600, lr=5e-4, warmup_steps=60,
                                      save_every=100, eval_every=100),
    "c4_minilm_s64_b16_lr1e-3": _minilm_args(seq_len=64, batch_size=16, max_steps=600, lr=1e-3, warmup_steps=60,
                                             save_every=100, eval_every=100),
}


def recipe_args(name: str, max_steps: int | None = None) -> PretrainArgs:
    spec = dict(RECIPES[name])
    minilm = str(fetch("minilm"))
    spec = {k: (minilm if v == MINILM else v) for k, v in spec.items()}
    if max_steps is not None:
        spec["max_steps"] = max_steps
    return PretrainArgs(corpus=[str(p) for p in corpus_paths()], out=str(ROOT / name), **spec)


def cli_command(args: PretrainArgs) -> str:
    parts = ["bertforge pretrain", "--corpus " + " ".join(args.corpus), f"--out {args.out}"]
    for f in dataclasses.fields(PretrainArgs):
        if f.name in ("corpus", "out", "extra", "objective"):
            continue
        default = getattr(PretrainArgs(corpus=["x"], out="x"), f.name)  # after the library's own resolution
        v = getattr(args, f.name)
        if v == default:
            continue
        if f.name == "nsp":
            parts.append("--no-nsp")
        elif f.name == "tokenizer" or f.name == "init_from":
            parts.append(f"--{f.name.replace('_', '-')} {v}")
        elif f.name == "vocab_size" and args.tokenizer:
            continue
        else:
            parts.append(f"--{f.name.replace('_', '-')} {v}")
    return " ".join(parts)


# ----------------------------------------------------------------------------------- evaluation set

_NORMALIZER = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                         lowercase=True)
_PRE = pre_tokenizers.BertPreTokenizer()


def words_of(sentence: str) -> list[str]:
    return [w for w, _ in _PRE.pre_tokenize_str(_NORMALIZER.normalize_str(sentence))]


def held_out_split(docs: list[list[str]], s: PrepareSettings | None = None) -> list[bool]:
    """The prepare pipeline's held-out flag per document (same chunking and per-chunk generator)."""
    s = s or PrepareSettings()
    flags: list[bool] = []
    chunk, size = 0, 0
    chunk_sizes: list[int] = []
    for doc in docs:
        chunk += 1
        size += sum(len(x) for x in doc)
        if size >= s.shard_bytes:
            chunk_sizes.append(chunk)
            chunk, size = 0, 0
    if chunk:
        chunk_sizes.append(chunk)
    for index, n in enumerate(chunk_sizes):
        rng = np.random.default_rng([s.seed, index])
        flags += list(rng.random(n) < s.eval_fraction)
    return flags


def setup(_args) -> None:
    from bertforge.vocab import train_vocab_from_corpus

    EVAL.mkdir(parents=True, exist_ok=True)
    paths = corpus_paths()
    wiki_docs = list(read_documents([paths[0]]))
    news_docs = list(read_documents([paths[1]]))
    docs = wiki_docs + news_docs
    held = held_out_split(docs)
    train_docs = [d for d, h in zip(docs, held) if not h]
    held_wiki = [d for d, h in zip(docs[:len(wiki_docs)], held) if h]
    held_news = [d for d, h in zip(docs[len(wiki_docs):], held[len(wiki_docs):]) if h]
    lee_test = list(read_documents([fetch("gensim-data") / "lee.cor"], format="lines"))
    print(f"{len(docs)} documents; held out {len(held_wiki)} wiki + {len(held_news)} news (+{len(lee_test)} lee.cor)")

    # Training-text statistics (held-out documents excluded).
    uni, bi, tri = Counter(), Counter(), Counter()
    for doc in train_docs:
        for sent in doc:
            w = ["<s>"] + words_of(sent) + ["</s>"]
            uni.update(w[1:-1])
            bi.update(itertools.pairwise(w))
            tri.update(zip(w[:-2], w[1:-1], w[2:]))
    alpha = [w for w, _ in uni.most_common() if w.isalpha()]
    top = set(alpha[:TOP_K_EXCLUDED])

    vocabs = {}
    for n in REFERENCE_VOCABS:
        d = EVAL / f"tokenizer-{n}"
        if not (d / "vocab.txt").exists():
            print(f"training the {n}-piece reference vocabulary ...", flush=True)
            train_vocab_from_corpus(paths, n, d)
        vocabs[f"wp{n}"] = BertTokenizer.from_pretrained(d).vocab
    vocabs["minilm"] = BertTokenizer.from_pretrained(fetch("minilm")).vocab

    def eligible(w: str) -> bool:
        return (w.isascii() and w.isalpha() and len(w) >= 3 and w not in top and uni[w] >= MIN_TRAIN_COUNT
                and all(w in v for v in vocabs.values()))

    answers = sorted((w for w in uni if eligible(w)), key=lambda w: (-uni[w], w))
    print(f"{len(answers)} eligible answer words (excluded top {TOP_K_EXCLUDED}: "
          f"{', '.join(alpha[:12])}, ... {alpha[TOP_K_EXCLUDED - 1]})")

    rng = random.Random(ITEM_SEED)
    items = []
    for source, group in (("wiki", [("wiki-heldout", d) for d in held_wiki]),
                          ("news", [("lee-background-heldout", d) for d in held_news]
                                   + [("lee.cor", d) for d in lee_test])):
        candidates = []
        for origin, doc in group:
            for sent in doc:
                if "\ufffd" in sent:
                    continue
                w = words_of(sent)
                if not 8 <= len(w) <= 50:
                    continue
                positions = [i for i, x in enumerate(w) if eligible(x)]
                if positions:
                    candidates.append((origin, w, rng.choice(positions)))
        rng.shuffle(candidates)
        per_answer, chosen = Counter(), 0
        for origin, w, i in candidates:
            if chosen == ITEMS_PER_SOURCE or per_answer[w[i]] == MAX_PER_ANSWER:
                continue
            per_answer[w[i]] += 1
            chosen += 1
            items.append({"source": source, "origin": origin, "words": w, "index": i, "answer": w[i]})
        print(f"{source}: {len(candidates)} candidate sentences -> {chosen} items")

    # Baselines.
    answer_set = set(answers)
    after = defaultdict(Counter)
    for (a, b), c in bi.items():
        if b in answer_set:
            after[a][b] = c
    around = defaultdict(Counter)
    for (a, b, c3), c in tri.items():
        if b in answer_set:
            around[(a, c3)][b] = c
    before_count = defaultdict(Counter)  # right word -> eligible word -> count
    for (a, b), c in bi.items():
        if a in answer_set:
            before_count[b][a] = c

    def fill(ranked: list[str], k: int = 5) -> list[str]:
        out = list(dict.fromkeys(ranked))
        for w in answers:
            if len(out) >= k:
                break
            if w not in out:
                out.append(w)
        return out[:k]

    def guesses(item: dict) -> dict[str, list[str]]:
        w, i = item["words"], item["index"]
        left = w[i - 1] if i > 0 else "<s>"
        right = w[i + 1] if i + 1 < len(w) else "</s>"
        bigram = [x for x, _ in after[left].most_common(5)]
        exact = [x for x, _ in around[(left, right)].most_common(5)]
        cands = set(after[left]) & set(before_count[right])
        nb = sorted(cands, key=lambda x: (-after[left][x] * before_count[right][x] / uni[x], x))[:5]
        return {"unigram": fill([]), "bigram": fill(bigram), "left+right": fill(exact + nb + bigram)}

    baselines = {}
    for item in items:
        item["baselines"] = guesses(item)
    for name in ("unigram", "bigram", "left+right"):
        baselines[name] = score([it["baselines"][name] for it in items], items)

    probe_counts = {w: uni[w] for w in PROBE_ANSWERS}
    (EVAL / "items.json").write_text(json.dumps(items, indent=1))
    meta = {"top_excluded": alpha[:TOP_K_EXCLUDED], "n_answers": len(answers), "answers_head": answers[:50],
            "held_out": {"wiki": [d[0][:80] for d in held_wiki], "news": [d[0][:80] for d in held_news],
                         "lee.cor_documents": len(lee_test)},
            "train_words": sum(uni.values()), "baselines": baselines, "probe_answer_counts": probe_counts}
    (EVAL / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"training text: {sum(uni.values()):,} words")
    print_scores("baselines", baselines)


def score(predictions: list[list[str]], items: list[dict]) -> dict:
    out = {}
    for source in ("all", "wiki", "news"):
        sel = [(p, it) for p, it in zip(predictions, items) if source == "all" or it["source"] == source]
        if not sel:
            continue
        out[source] = {"n": len(sel),
                       "top1": sum(p[0] == it["answer"] for p, it in sel) / len(sel),
                       "top5": sum(it["answer"] in p[:5] for p, it in sel) / len(sel)}
    return out


def print_scores(title: str, table: dict) -> None:
    print(f"\n{title}: cloze top-1 / top-5 (all | wiki | news)")
    for name, s in table.items():
        row = "  ".join(f"{s[k]['top1']:6.1%} / {s[k]['top5']:6.1%}" for k in ("all", "wiki", "news") if k in s)
        print(f"  {name:<14} {row}   (n={s['all']['n']})")


@torch.no_grad()
def cloze_predictions(model: BertForPreTraining, tokenizer: BertTokenizer, items: list[dict],
                      batch: int = 32, restrict: set[str] | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """Top-5 over the whole vocabulary, and top-5 over tokens not among the excluded frequent words."""
    vocab = tokenizer.vocab
    for it in items:
        assert it["answer"] in vocab, f"{it['answer']!r} is not one piece in this tokenizer"
    itos = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    banned = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
    for i, t in enumerate(itos):
        if restrict is not None and (t in restrict or not t.isalpha()):
            banned[i] = True
    full, content = [], []
    model.eval()
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        texts = [" ".join("[MASK]" if j == it["index"] else x for j, x in enumerate(it["words"])) for it in chunk]
        enc = tokenizer(texts, padding=True, truncation=True, max_length=128)
        logits = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).prediction_logits
        pos = (enc["input_ids"] == tokenizer.mask_token_id).nonzero()
        assert len(pos) == len(chunk), "one [MASK] per item"
        lg = logits[pos[:, 0], pos[:, 1]]
        full += [[itos[i] for i in row] for row in lg.topk(5, dim=-1).indices.tolist()]
        content += [[itos[i] for i in row] for row in lg.masked_fill(banned, -1e9).topk(5, dim=-1).indices.tolist()]
    return full, content


def evaluate_model(model_dir: Path) -> dict:
    items = json.loads((EVAL / "items.json").read_text())
    meta = json.loads((EVAL / "meta.json").read_text())
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    model = BertForPreTraining.from_pretrained(model_dir).eval()
    full, content = cloze_predictions(model, tokenizer, items, restrict=set(meta["top_excluded"]))
    probes = {p: [(t, round(prob, 3)) for t, prob in fill_mask(model, tokenizer, p, top_k=5)[0]] for p in PROBES}
    examples = []
    for it, f in list(zip(items, full))[:: max(1, len(items) // 12)]:
        examples.append({"text": " ".join("[MASK]" if j == it["index"] else x for j, x in enumerate(it["words"])),
                         "answer": it["answer"], "model": f, "bigram": it["baselines"]["bigram"]})
    paired = {}
    for name in ("bigram", "left+right"):
        for k in (1, 5):
            m = [it["answer"] in f[:k] for it, f in zip(items, full)]
            b = [it["answer"] in it["baselines"][name][:k] for it in items]
            paired[f"top{k}_vs_{name}"] = {"model_only": sum(x and not y for x, y in zip(m, b)),
                                           "baseline_only": sum(y and not x for x, y in zip(m, b))}
    return {"cloze": score(full, items), "cloze_content_only": score(content, items), "paired": paired,
            "predictions": full, "probes": probes,
            "examples": examples, "baselines": meta["baselines"]}


def run_summary(out: Path) -> dict:
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [r for r in records if "eval_mlm_loss" in r]
    train = [r for r in records if "elapsed_s" in r]
    last = train[-1] if train else {}
    return {"steps": last.get("step"), "elapsed_s": last.get("elapsed_s"),
            "s_per_step": last["elapsed_s"] / last["step"] if last else None,
            "final_train_mlm_loss": last.get("mlm_loss"),
            "eval_first": evals[0] if evals else None, "eval_final": evals[-1] if evals else None,
            "eval_curve": [(r["step"], round(r["eval_mlm_accuracy"], 4), round(r["eval_mlm_loss"], 3))
                           for r in evals]}


def run(args) -> None:
    pa = recipe_args(args.recipe, args.max_steps)
    print(f"recipe {args.recipe}: {cli_command(pa)}", flush=True)
    info = {"recipe": args.recipe, "args": dataclasses.asdict(pa), "command": cli_command(pa),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
            "loadavg_start": os.getloadavg()}
    start = time.perf_counter()
    result = pretrain(pa)
    info["wall_s"] = time.perf_counter() - start
    info["loadavg_end"] = os.getloadavg()
    if result["status"] != "done":
        print("not finished:", result)
        return
    (ROOT / f"{args.recipe}.run.json").write_text(json.dumps(info, indent=1))
    evaluate(args)


def evaluate(args) -> None:
    out = ROOT / args.recipe
    info = json.loads((ROOT / f"{args.recipe}.run.json").read_text()) if (ROOT / f"{args.recipe}.run.json").exists() else {}
    res = {**info, **run_summary(out), **evaluate_model(out / "model")}
    (ROOT / f"{args.recipe}.json").write_text(json.dumps(res, indent=1))
    show(args.recipe, res)


def show(name: str, res: dict) -> None:
    ef = res["eval_final"] or {}
    print(f"\n== {name}: {res['steps']} steps, {res['s_per_step']:.2f} s/step (threads {res.get('torch_threads')}, "
          f"load {res.get('loadavg_start')})")
    print(f"   held-out MLM accuracy {ef.get('eval_mlm_accuracy', float('nan')):.1%}, perplexity "
          f"{ef.get('eval_perplexity', float('nan')):.1f}")
    print_scores("cloze", {**res["baselines"], "model": res["cloze"], "model(content)": res["cloze_content_only"]})
    for p, g in res["probes"].items():
        print(f"  {p}\n      -> " + "  ".join(f"{t} ({q:.2f})" for t, q in g))
    for e in res["examples"][:6]:
        print(f"  [{e['answer']}] {e['text'][:110]}\n      model {e['model']}  bigram {e['bigram']}")


def table(_args) -> None:
    """One row per finished recipe; idle 2-core minutes estimated from ``bench`` (step cost relative to a_demo,
    whose idle 2-core step is ~1.0 s on this project's machine) times the recipe's steps."""
    bench_file = ROOT / "bench.json"
    ratios = {k: v["ratio_to_first"] for k, v in json.loads(bench_file.read_text()).items()
              if isinstance(v, dict)} if bench_file.exists() else {}
    for f in sorted(ROOT.glob("*.json")):
        if f.name.endswith(".run.json") or f.name == "bench.json":
            continue
        r = json.loads(f.read_text())
        c, cc, ef = r["cloze"]["all"], r["cloze_content_only"]["all"], r.get("eval_final") or {}
        idle = f"~{ratios[f.stem] * r['steps'] / 60:4.1f} idle min" if f.stem in ratios else " " * 14
        print(f"{f.stem:<26} {r['steps']:>4} steps {r['s_per_step']:.2f} s/step (shared) {idle}  "
              f"MLM {ef.get('eval_mlm_accuracy', float('nan')):6.1%}  cloze {c['top1']:5.1%}/{c['top5']:5.1%}  "
              f"content-only {cc['top1']:5.1%}/{cc['top5']:5.1%}")
    b = json.loads((EVAL / "meta.json").read_text())["baselines"]
    print_scores("baselines", b)


def check(args) -> None:
    """The re-derived held-out documents are the prepared run's eval split (pieces of each eval instance's
    first segment occur in the re-derived held-out text and not ... in order)."""
    from bertforge.data.pretraining_data import InstanceStore

    out = ROOT / args.recipe
    tok = BertTokenizer.from_pretrained(out / "tokenizer") if (out / "tokenizer").exists() else \
        BertTokenizer.from_pretrained(out / "model")
    docs = list(read_documents(corpus_paths()))
    held = held_out_split(docs)
    def stream(ds):
        return " " + " ".join(" ".join(map(str, tok.piece_ids([" ".join(d)])[0])) for d in ds) + " "
    held_text = stream([d for d, h in zip(docs, held) if h])
    store = InstanceStore(out / "data", "eval")
    rows = store.rows(np.arange(len(store)))
    found = 0
    for toks, blen in zip(rows["tokens"], rows["b_start"]):
        a = [int(t) for t in toks[1:min(int(blen) - 1, 9)]]
        found += (" " + " ".join(map(str, a)) + " ") in held_text
    print(f"{found}/{len(store)} eval instances start inside the re-derived held-out documents")


def bench(args) -> None:
    """Seconds per training step of each recipe through the library's own loop, in one process, recipes
    interleaved (repeats) so that a change in machine load hits all of them; steps 10..N timed (no eval,
    no checkpoint in between)."""
    import shutil

    times: dict[str, list[float]] = defaultdict(list)
    for rep in range(args.repeats):
        for name in args.recipes:
            pa = recipe_args(name, args.steps)
            out = ROOT / "bench" / name
            tok = ROOT / name / "tokenizer"
            if pa.tokenizer is None and (tok / "vocab.txt").exists():
                pa.tokenizer = str(tok)
            pa.out, pa.eval_every, pa.save_every, pa.log_every, pa.progress = str(out), 10**6, 10**6, 5, False
            for sub in ("checkpoints", "metrics.jsonl", "model"):
                shutil.rmtree(out / sub, ignore_errors=True) if sub != "metrics.jsonl" else \
                    (out / sub).unlink(missing_ok=True)
            load = os.getloadavg()[0]
            pretrain(pa)
            rec = {r["step"]: r["elapsed_s"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                   if "elapsed_s" in r}
            t = (rec[args.steps] - rec[10]) / (args.steps - 10)
            times[name].append(t)
            print(f"BENCH rep {rep} {name}: {t:.3f} s/step (load {load:.1f})", flush=True)
    ref = float(np.median(times[args.recipes[0]]))
    summary = {n: {"median_s_per_step": float(np.median(v)), "all": v,
                   "ratio_to_first": float(np.median(v)) / ref} for n, v in times.items()}
    (ROOT / "bench.json").write_text(json.dumps({"threads": torch.get_num_threads(), **summary}, indent=1))
    for n, v in summary.items():
        print(f"{n:<24} {v['median_s_per_step']:.3f} s/step  x{v['ratio_to_first']:.2f} of {args.recipes[0]}")


def head_warmup(args) -> None:
    """(d), stage 1, NOT expressible with `bertforge pretrain` today: MiniLM's encoder frozen, only the fresh
    MLM head (transform + output bias; the decoder is tied to the frozen word embeddings) trained at a high
    learning rate on the MiniLM-tokenized corpus prepared by a c* run (seq 64). Writes a model directory that
    stage 2 (`--init-from`) continues from, and evaluates it alone."""
    out = ROOT / args.name
    minilm = fetch("minilm")
    tokenizer = BertTokenizer.from_pretrained(minilm)
    model = BertForPreTraining.from_pretrained(minilm)
    for n, prm in model.named_parameters():
        prm.requires_grad = n.startswith("cls.predictions.")
    params = [prm for prm in model.parameters() if prm.requires_grad]
    print(f"training {sum(p.numel() for p in params):,} head parameters; encoder frozen", flush=True)
    from bertforge.data.pretraining_data import InstanceStore

    store = InstanceStore(ROOT / args.data / "data", "train")
    rows = store.rows(np.arange(len(store)))
    special = np.array(sorted(tokenizer.all_special_ids))
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warm = max(1, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (args.steps - s) / (args.steps - warm))))
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(store))
    model.train()
    started, log = time.perf_counter(), []
    for step in range(args.steps):
        idx = order[(step * args.batch_size) % len(order):][:args.batch_size]
        if len(idx) < args.batch_size:
            order = rng.permutation(len(store))
            idx = order[:args.batch_size]
        toks = rows["tokens"][idx].astype(np.int64)
        lengths = rows["lengths"][idx]
        mask_in = np.arange(toks.shape[1])[None, :] < lengths[:, None]
        cand = mask_in & ~np.isin(toks, special)
        pick = cand & (rng.random(toks.shape) < 0.15)
        labels = np.where(pick, toks, -100)
        r = rng.random(toks.shape)
        inp = toks.copy()
        inp[pick & (r < 0.8)] = tokenizer.mask_token_id
        rnd = pick & (r >= 0.8) & (r < 0.9)
        inp[rnd] = rng.integers(len(special) + 100, tokenizer.vocab_size, rnd.sum())
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
        o = model(t(inp), torch.zeros_like(t(inp)), t(mask_in.astype(np.int64)), labels=t(labels))
        o.mlm_loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        if (step + 1) % 25 == 0:
            log.append({"step": step + 1, "mlm_loss": o.mlm_loss.item(), "elapsed_s": time.perf_counter() - started})
            print(log[-1], flush=True)
    model.eval()
    (out / "model").mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    elapsed = time.perf_counter() - started
    res = {"recipe": args.name, "stage1": vars(args) | {"fn": None}, "steps": args.steps, "elapsed_s": elapsed,
           "s_per_step": elapsed / args.steps, "log": log, "eval_final": None, "torch_threads": torch.get_num_threads(),
           "loadavg_start": None, **evaluate_model(out / "model")}
    (ROOT / f"{args.name}.json").write_text(json.dumps(res, indent=1, default=str))
    show(args.name, res)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup").set_defaults(fn=setup)
    r = sub.add_parser("run")
    r.add_argument("recipe", choices=list(RECIPES))
    r.add_argument("--max-steps", type=int)
    r.set_defaults(fn=run)
    e = sub.add_parser("eval")
    e.add_argument("recipe")
    e.set_defaults(fn=evaluate)
    c = sub.add_parser("check")
    c.add_argument("recipe")
    c.set_defaults(fn=check)
    sub.add_parser("table").set_defaults(fn=table)
    h = sub.add_parser("headwarm")
    h.add_argument("--name", default="d1_minilm_headonly")
    h.add_argument("--data", default="c3_minilm_s64_b16", help="a c* run whose prepared data (seq 64) is reused")
    h.add_argument("--steps", type=int, default=300)
    h.add_argument("--batch-size", type=int, default=32)
    h.add_argument("--lr", type=float, default=2e-3)
    h.add_argument("--seed", type=int, default=12345)
    h.set_defaults(fn=head_warmup)
    b = sub.add_parser("bench")
    b.add_argument("recipes", nargs="+", choices=list(RECIPES))
    b.add_argument("--steps", type=int, default=30)
    b.add_argument("--repeats", type=int, default=2)
    b.set_defaults(fn=bench)
    sub.add_parser("list").set_defaults(fn=lambda a: [print(f"{n}: {cli_command(recipe_args(n))}") for n in RECIPES])
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
