"""Fine-tuned inference and training speed: bertforge vs transformers, same weights, fp32, same threads.

1. Prediction on SNLI test pairs (MiniLM encoder + a 3-way head): bertforge's predict path
   (`bertforge.inference.predictor.predict_examples`: length-bucketed batches) vs transformers with
   fixed-size padded batches (max_length 128) in input order.
2. Fine-tuning step (forward + backward + AdamW) on the same padded batches of SNLI pairs.

    .venv/bin/python benchmarks/predict.py [--threads 2] [--pairs 500] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from bertforge.data.fetch import fetch
from bertforge.data.readers import read_snli
from bertforge.io.weights import load_into
from bertforge.model import BertForSequenceClassification
from bertforge.tasks import DataOptions, get_task
from bertforge.tokenization import BertTokenizer
from bertforge.inference.predictor import predict_examples
from bertforge.train.optim import build_optimizer


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=500, help="SNLI test pairs to predict")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    path = fetch("minilm", quiet=True)
    labels = {"0": "contradiction", "1": "entailment", "2": "neutral"}
    torch.manual_seed(0)
    ours = BertForSequenceClassification.from_pretrained(path, num_labels=3, id2label=labels).eval()
    theirs = transformers.BertForSequenceClassification.from_pretrained(str(path), num_labels=3).eval()
    load_into(theirs, ours.state_dict(), source="bertforge")  # identical weights, head included
    tokenizer = BertTokenizer.from_pretrained(path)
    hf_tok = transformers.BertTokenizer.from_pretrained(str(path))
    examples, _ = read_snli(fetch("snli", quiet=True) / "snli_1.0_test.jsonl")
    examples = examples[:args.pairs]
    task, opts = get_task("classify"), DataOptions(max_length=128)
    first, second = [e.text for e in examples], [e.text_pair for e in examples]
    cpu = torch.device("cpu")

    def run_ours():
        return predict_examples(ours, task, tokenizer, examples, opts, 64, cpu)[0]

    @torch.no_grad()
    def run_theirs(batch_size: int = 64):
        out = []
        for i in range(0, len(examples), batch_size):
            enc = hf_tok(first[i:i + batch_size], second[i:i + batch_size], padding="max_length", truncation=True,
                         max_length=128, return_tensors="pt")
            out += theirs(**enc).logits.argmax(-1).tolist()
        return [labels[str(i)] for i in out]

    agree = sum(a == b for a, b in zip(run_ours(), run_theirs())) / len(examples)
    assert agree > 0.99, f"the two models disagree on {1 - agree:.1%} of pairs: not the same model"
    ours_s, theirs_s = [], []
    for _ in range(args.repeats):
        ours_s.append(median_time(run_ours, 1))
        theirs_s.append(median_time(run_theirs, 1))
    o, t = statistics.median(ours_s), statistics.median(theirs_s)
    print(f"threads={args.threads}  torch {torch.__version__}  transformers {transformers.__version__}")
    print(f"\nSNLI test pairs, MiniLM + 3-way head ({len(examples)} pairs; predictions agree on {agree:.1%})")
    print(f"  bertforge predict (length-bucketed)      {len(examples) / o:8.1f} pairs/s")
    print(f"  transformers, padded to 128, batch 64    {len(examples) / t:8.1f} pairs/s")
    print(f"  ratio bertforge / transformers: {t / o:.2f}x")

    # 2. Training steps on the same padded batches (32 pairs, padded to the batch's longest).
    batches = []
    for i in range(0, 32 * args.train_steps, 32):
        enc = tokenizer(first[i:i + 32], second[i:i + 32], max_length=128)
        enc["labels"] = torch.randint(0, 3, (len(enc["input_ids"]),))
        batches.append(enc)
    ours.train(), theirs.train()
    opt_ours, opt_theirs = build_optimizer(ours, lr=2e-5), build_optimizer(theirs, lr=2e-5)

    def train(model, opt, hf: bool):
        def run():
            for b in batches:
                out = model(**b) if hf else model(b["input_ids"], b["token_type_ids"], b["attention_mask"],
                                                  labels=b["labels"])
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        return run

    ours_s, theirs_s = [], []
    for _ in range(args.repeats):
        ours_s.append(median_time(train(ours, opt_ours, False), 1))
        theirs_s.append(median_time(train(theirs, opt_theirs, True), 1))
    o, t = statistics.median(ours_s), statistics.median(theirs_s)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    print(f"\nFine-tuning step, batch 32 SNLI pairs, {args.train_steps} steps ({tokens:,} tokens)")
    print(f"  bertforge      {tokens / o:8.0f} tokens/s")
    print(f"  transformers   {tokens / t:8.0f} tokens/s")
    print(f"  ratio bertforge / transformers: {t / o:.2f}x")


if __name__ == "__main__":
    main()
