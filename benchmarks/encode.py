"""Inference speed: bertforge vs transformers.BertModel, same weights, fp32, eval, no_grad, same threads.

1. Fixed length: base config (random weights, shared), batch 8 x 128 random tokens.
2. Mixed lengths: 512 real sentences of 16-128 tokens (MiniLM weights). transformers runs fixed-size
   padded batches in input order (the common loop); bertforge runs its batch encode API
   (`bertforge.inference.encode`: sort by length, pad per bucket).
3. Sentence embeddings: 512 real SNLI sentences (premises and hypotheses of the training subset, MiniLM
   weights, mean pooling, normalised): `bertforge.inference.encode` vs sentence-transformers'
   `SentenceTransformer.encode` (the same weights as models.Transformer + mean models.Pooling, batch 32, its
   own length sorting) vs transformers padded to 128 in batches of 32; the vectors are asserted equal first.
Prints tokens/s, the ratio, this machine's fp32 matmul GFLOP/s and each model's share of it.

    .venv/bin/python benchmarks/encode.py [--threads 2] [--repeats 5]
    .venv/bin/python benchmarks/encode.py --quick     # part 3 only, 2 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from bertforge.config import BertConfig
from bertforge.data.fetch import fetch
from bertforge.inference import encode
from bertforge.io.weights import load_into
from bertforge.model import BertModel
from bertforge.tokenization import BertTokenizer


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def encoder_flops(config: BertConfig, lengths: list[int]) -> float:
    """Multiply-adds x 2 of the encoder on the real tokens (projections, FFN, attention scores)."""
    H, L, I = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return sum(L * (2 * t * (4 * H * H + 2 * H * I) + 4 * t * t * H) for t in lengths)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, tokens: int, flops: float, ours_s: float, theirs_s: float, peak: float) -> None:
    print(f"\n{name}")
    for who, s in (("bertforge", ours_s), ("transformers", theirs_s)):
        print(f"  {who:<13} {tokens / s:>10,.0f} tokens/s  {flops / s / 1e9:7.1f} GFLOP/s "
              f"({100 * flops / s / 1e9 / peak:4.1f}% of matmul peak)")
    print(f"  ratio bertforge / transformers: {theirs_s / ours_s:.2f}x")


def snli_sentences(n: int) -> list[str]:
    """The first ``n`` distinct premises and hypotheses of the SNLI training subset, interleaved."""
    import json

    seen: dict[str, None] = {}
    with open(fetch("snli", quiet=True) / "snli_1.0_train_subset.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            for text in (rec["sentence1"], rec["sentence2"]):
                seen.setdefault(text.strip(), None)
            if len(seen) >= n:
                break
    return list(seen)[:n]


def sentence_embeddings(args, peak: float) -> None:
    """Part 3: bertforge encode vs sentence-transformers vs transformers padded to 128, mean pooling."""
    import transformers
    from sentence_transformers import SentenceTransformer, models

    path = fetch("minilm", quiet=True)
    texts = snli_sentences(512)
    tokenizer = BertTokenizer.from_pretrained(path)
    ours = BertModel.from_pretrained(path).eval()
    st = SentenceTransformer(modules=[models.Transformer(str(path), max_seq_length=128),
                                      models.Pooling(ours.config.hidden_size, "mean")], device="cpu")
    theirs = transformers.BertModel.from_pretrained(str(path)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path))
    real = [len(r) for r in tokenizer(texts, max_length=128, padding=False, return_tensors=None)["input_ids"]]

    def run_ours():
        return encode(ours, tokenizer, texts, pooling="mean", max_length=128, normalize=True)

    def run_st():
        return torch.from_numpy(st.encode(texts, batch_size=32, normalize_embeddings=True))

    def run_padded(batch_size: int = 32):
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = hf_tok(texts[i:i + batch_size], padding="max_length", truncation=True, max_length=128,
                             return_tensors="pt")
                hidden = theirs(**enc).last_hidden_state
                weights = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1))
        return torch.cat(out)

    a, b, c = run_ours(), run_st(), run_padded()
    assert (a - b).abs().max() < 1e-4 and (a - c).abs().max() < 1e-4, "the encoders disagree"
    times = {"bertforge": [], "sentence-transformers": [], "transformers (pad 128)": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for name, fn in zip(times, (run_ours, run_st, run_padded)):
            times[name].append(timed(fn, 1))
    best = {k: min(v) for k, v in times.items()}
    flops = encoder_flops(ours.config, real)
    print(f"\nMiniLM sentence embeddings (mean pooling, normalised), {len(texts)} SNLI sentences of "
          f"{min(real)}-{max(real)} tokens (mean {sum(real) / len(real):.1f}); best of {args.repeats}")
    for name, s in best.items():
        print(f"  {name:<24} {sum(real) / s:>10,.0f} tokens/s  {len(texts) / s:>8,.0f} sentences/s  "
              f"{flops / s / 1e9:6.1f} GFLOP/s ({100 * flops / s / 1e9 / peak:4.1f}% of matmul peak)  "
              f"bertforge is {s / best['bertforge']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="sentence embeddings only, 2 repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    peak = matmul_gflops()
    print(f"threads={args.threads}  torch {torch.__version__}  transformers {transformers.__version__}")
    print(f"fp32 matmul (1024^3): {peak:.1f} GFLOP/s")
    if args.quick:
        args.repeats = 2
        return sentence_embeddings(args, peak)

    # 1. Fixed length, base config.
    config = BertConfig.preset("base")
    torch.manual_seed(0)
    theirs = transformers.BertModel(transformers.BertConfig(**config.to_dict())).eval()
    ours = BertModel(config).eval()
    load_into(ours, theirs.state_dict(), source="transformers")
    ids = torch.randint(1000, 30000, (8, 128))
    types, mask = torch.zeros_like(ids), torch.ones_like(ids)
    with torch.no_grad():
        diff = (ours(ids, types, mask).last_hidden_state
                - theirs(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state)
        assert diff.abs().max() < 1e-4, "models disagree; the benchmark would be meaningless"
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            ours_s.append(timed(lambda: ours(ids, types, mask), 1))
            theirs_s.append(timed(lambda: theirs(input_ids=ids, token_type_ids=types, attention_mask=mask), 1))
    report("base, batch 8 x 128, fixed length", ids.numel(), encoder_flops(config, [128] * 8),
           statistics.median(ours_s), statistics.median(theirs_s), peak)

    # 2. Mixed lengths, real sentences through each library's batch path (MiniLM weights).
    path = fetch("minilm", quiet=True)
    tokenizer = BertTokenizer.from_pretrained(path)
    ours = BertModel.from_pretrained(path).eval()
    theirs = transformers.BertModel.from_pretrained(str(path)).eval()
    hf_tok = transformers.BertTokenizer.from_pretrained(str(path))
    words = (fetch("gensim-data", quiet=True) / "lee_background.cor").read_text().split()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(16, 129, (512,), generator=g).tolist()
    texts, start = [], 0
    for n in lengths:  # a text of ~n pieces: take words until the tokenizer says n - 2
        piece = words[start:start + n]
        while len(tokenizer.tokenize(" ".join(piece))) > n - 2:
            piece = piece[:-1]
        texts.append(" ".join(piece))
        start = (start + n) % (len(words) - 200)
    real = [len(tokenizer.tokenize(t)) + 2 for t in texts]

    def run_theirs(batch_size: int = 32):
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = hf_tok(texts[i:i + batch_size], padding="max_length", truncation=True, max_length=128,
                             return_tensors="pt")
                theirs(**enc)

    ours_s, theirs_s = [], []
    for _ in range(max(1, args.repeats // 2)):
        ours_s.append(timed(lambda: encode(ours, tokenizer, texts, max_length=128), 1))
        theirs_s.append(timed(run_theirs, 1))
    report(f"MiniLM, {len(texts)} sentences of 16-128 tokens (mean {sum(real) / len(real):.0f}); "
           "transformers padded to 128 in batches of 32", sum(real),
           encoder_flops(ours.config, real), statistics.median(ours_s), statistics.median(theirs_s), peak)

    # 3. Sentence embeddings of real sentences: bertforge, sentence-transformers, padded transformers.
    sentence_embeddings(args, peak)


if __name__ == "__main__":
    main()
