"""The `bertforge` command line: thin sub-commands over the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from bertforge import __version__


def _data_fetch(args: argparse.Namespace) -> None:
    from bertforge.data.fetch import SOURCES, fetch

    if args.list or not args.names:
        for name, source in SOURCES.items():
            print(f"{name:<18} {source.requirement:<28} {source.description}")
        return
    for name in args.names:
        print(fetch(name))


def _data_prepare(args: argparse.Namespace) -> None:
    from bertforge.data.prepare import PrepareSettings, prepare

    settings = PrepareSettings(max_seq_length=args.seq_len, short_seq_prob=args.short_seq_prob,
                               dupe_factor=args.dupe_factor, nsp=args.nsp, eval_fraction=args.eval_fraction,
                               seed=args.seed, format=args.format)
    meta = prepare(args.corpus, args.tokenizer, args.out, settings, workers=args.workers)
    c = meta["corpus"]
    print(f"{c['documents']:,} documents ({c['empty_documents_skipped']} empty skipped, "
          f"{c['undecodable_bytes_replaced']} undecodable bytes replaced) -> {meta['instances']['train']:,} "
          f"training and {meta['instances']['eval']:,} held-out instances in {args.out}")


def _demo(args: argparse.Namespace) -> None:
    from bertforge.demo import run_demo, run_minilm_demo

    if args.minilm:
        run_minilm_demo()
    else:
        run_demo(args.out, args.max_steps)


def _encode(args: argparse.Namespace) -> None:
    import json

    from bertforge.inference import encode
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    model, tokenizer = BertModel.from_pretrained(args.model), BertTokenizer.from_pretrained(args.model)
    with open(args.input, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    vectors = encode(model, tokenizer, texts, pooling=args.pooling, normalize=args.normalize)
    out = open(args.output, "w", encoding="utf-8") if args.output != "-" else sys.stdout
    for v in vectors.tolist():
        out.write(json.dumps([round(x, 6) for x in v]) + "\n")


def _pretrain(args: argparse.Namespace) -> None:
    from bertforge.train.pretrain import PretrainArgs, pretrain

    fields = {f.name for f in dataclasses.fields(PretrainArgs)}
    result = pretrain(PretrainArgs(**{k: v for k, v in vars(args).items() if k in fields}))
    if result.get("final_eval"):
        first, last = result["first_eval"], result["final_eval"]
        print(f"held-out MLM accuracy {last['eval_mlm_accuracy']:.3f} (random init {first['eval_mlm_accuracy']:.3f}), "
              f"perplexity {last['eval_perplexity']:.1f}, NSP accuracy {last['eval_nsp_accuracy']:.3f}")
        print(f"model: {result['model']}\ncurves: {result['curves']}\nmetrics: {result['metrics']}")


def _tokenizer_train(args: argparse.Namespace) -> None:
    from bertforge.vocab import train_vocab_from_corpus

    tok = train_vocab_from_corpus(args.input, args.vocab_size, args.out, lowercase=not args.no_lowercase,
                                  format=args.format)
    print(f"wrote a {tok.vocab_size}-piece vocabulary to {args.out}")


def _fill_mask(args: argparse.Namespace) -> None:
    from bertforge.inference import fill_mask
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import BertTokenizer

    model = BertForPreTraining.from_pretrained(args.model)
    tokenizer = BertTokenizer.from_pretrained(args.model)
    for text in args.texts:
        print(text)
        for candidates in fill_mask(model, tokenizer, text, top_k=args.top_k):
            print("  " + "  ".join(f"{token} ({p:.2f})" for token, p in candidates))


def _data_options(args: argparse.Namespace):
    from bertforge.tasks import DataOptions

    return DataOptions(format=args.format, text_field=args.text_field, text_pair_field=args.text_pair_field,
                       label_field=args.label_field, encoding=args.encoding, scheme=args.scheme,
                       max_length=args.max_length, doc_stride=args.doc_stride,
                       max_query_length=args.max_query_length, n_best=args.n_best,
                       max_answer_length=args.max_answer_length, null_threshold=args.null_threshold)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--format", default="auto", help="classify/regress: table (CSV/TSV/JSONL), snli, fasttext, "
                   "glue:TASK (MNLI, QQP, QNLI, SST-2, CoLA, STS-B, MRPC, RTE, WNLI); choice: swag; tag: conll, "
                   "peoples-daily; qa: squad (v1.1 or v2.0)")
    g.add_argument("--text-field", default="text")
    g.add_argument("--text-pair-field", default="text_pair")
    g.add_argument("--label-field", default="label")
    g.add_argument("--encoding", default="utf-8")
    g.add_argument("--scheme", choices=["BIO", "IOBES"], default="BIO", help="tagging scheme")
    g.add_argument("--max-length", type=int, default=128, help="pieces per input (QA: per window)")
    g.add_argument("--doc-stride", type=int, default=128, help="QA: overlap between context windows")
    g.add_argument("--max-query-length", type=int, default=64)
    g.add_argument("--n-best", type=int, default=20)
    g.add_argument("--max-answer-length", type=int, default=30)
    g.add_argument("--null-threshold", type=float, default=0.0, help="SQuAD v2: answer '' above this")


def _finetune(args: argparse.Namespace) -> None:
    from bertforge.train.finetune import FinetuneArgs, finetune

    summary = finetune(FinetuneArgs(
        task=args.task, model=args.model, train=args.train, dev=args.dev, test=args.test, out=args.out,
        data=_data_options(args), epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        warmup=args.warmup, weight_decay=args.weight_decay, dropout=args.dropout, seeds=args.seeds,
        max_train_examples=args.max_train_examples, freeze_encoder=args.freeze_encoder, features=args.features,
        ignore_mismatched_sizes=args.ignore_mismatched_sizes, progress=args.progress))
    shown = {k: v for k, v in summary.items() if isinstance(v, float) and not k.endswith("_std")}
    print(f"{summary['split']} ({len(summary['seeds'])} seed(s)): " + ", ".join(
        f"{k} {v:.4f} ± {summary[k + '_std']:.4f}" for k, v in shown.items()))
    print(f"model: {args.out}/model   results: {args.out}/eval_results.json")


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from bertforge.train.finetune import evaluate_file

    result = evaluate_file(args.model, args.data, _data_options(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def _predict(args: argparse.Namespace) -> None:
    from bertforge.train.finetune import predict_file

    n = predict_file(args.model, args.input, args.output, _data_options(args))
    print(f"wrote {n} predictions to {args.output}")


def _add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.config import PRESETS
    from bertforge.train.pretrain import PretrainArgs as D

    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH",
                   help="text files: Google format, one document a line, JSONL, wiki XML, People's Daily; "
                        ".gz/.bz2 read transparently")
    p.add_argument("--out", required=True, help="run directory: tokenizer, data, checkpoints, logs, model")
    p.add_argument("--format", default=D.format, help="corpus format (default: detect per file)")
    g = p.add_argument_group("vocabulary")
    g.add_argument("--tokenizer", help="an existing tokenizer directory (vocab.txt); default: train one")
    g.add_argument("--vocab-size", type=int, default=D.vocab_size, help="size of the vocabulary to train")
    g.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="keep case (cased model)")
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=list(PRESETS), default=D.preset, help="Google's BERT size")
    g.add_argument("--config", help="a config.json instead of a preset")
    g.add_argument("--init-from", help="continue pre-training from this checkpoint directory")
    g.add_argument("--dropout", type=float, help="override both dropout probabilities")
    g = p.add_argument_group("data")
    g.add_argument("--seq-len", type=int, default=D.seq_len, help="max_seq_length of instances")
    g.add_argument("--no-nsp", dest="nsp", action="store_false", help="no next-sentence task: pack contiguous text")
    g.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    g.add_argument("--static-masks", action="store_true", help="one mask per instance (with --dupe-factor "
                   "copies), as Google's original; default: new masks every epoch")
    g.add_argument("--dupe-factor", type=int, default=D.dupe_factor, help="instance passes over the corpus")
    g.add_argument("--masked-lm-prob", type=float, default=D.masked_lm_prob)
    g.add_argument("--max-predictions-per-seq", type=int, default=D.max_predictions_per_seq)
    g.add_argument("--short-seq-prob", type=float, default=D.short_seq_prob)
    g.add_argument("--eval-fraction", type=float, default=D.eval_fraction, help="documents held out")
    g.add_argument("--workers", type=int, default=D.workers, help="data preparation processes")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=D.batch_size, help="sequences per process and micro-batch")
    g.add_argument("--grad-accum", type=int, default=D.grad_accum, help="micro-batches per optimizer step")
    g.add_argument("--max-steps", type=int, default=D.max_steps)
    g.add_argument("--lr", type=float, default=D.lr)
    g.add_argument("--warmup-steps", type=int, default=D.warmup_steps)
    g.add_argument("--schedule", choices=["linear", "cosine", "constant"], default=D.schedule)
    g.add_argument("--optimizer", choices=["adamw", "lamb"], default=D.optimizer)
    g.add_argument("--weight-decay", type=float, default=D.weight_decay)
    g.add_argument("--clip-norm", type=float, default=D.clip_norm)
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=D.amp,
                   help="mixed precision on CUDA (CPU always trains in fp32)")
    g.add_argument("--seed", type=int, default=D.seed)
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--save-every", type=int, default=D.save_every)
    g.add_argument("--keep-last", type=int, default=D.keep_last)
    g.add_argument("--eval-every", type=int, default=D.eval_every)
    g.add_argument("--eval-instances", type=int, default=D.eval_instances)
    g.add_argument("--log-every", type=int, default=D.log_every)
    g.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertforge", description="Pre-train, fine-tune, evaluate and "
                                     "serve BERT, with checkpoints that transformers loads too.")
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="fetch real corpora and weights into the cache")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = data_commands.add_parser("fetch", help="download a source by name (see --list)")
    fetch.add_argument("names", nargs="*", help="source names, e.g. minilm")
    fetch.add_argument("--list", action="store_true", help="list the sources")
    fetch.set_defaults(func=_data_fetch)
    prep = data_commands.add_parser("prepare", help="corpus -> sharded pre-training instances (pretrain "
                                    "runs this itself)")
    prep.add_argument("--corpus", nargs="+", required=True, metavar="PATH")
    prep.add_argument("--tokenizer", required=True, help="tokenizer directory (vocab.txt)")
    prep.add_argument("--out", required=True)
    prep.add_argument("--format", default="auto")
    prep.add_argument("--seq-len", type=int, default=128)
    prep.add_argument("--no-nsp", dest="nsp", action="store_false")
    prep.add_argument("--dupe-factor", type=int, default=1)
    prep.add_argument("--short-seq-prob", type=float, default=0.1)
    prep.add_argument("--eval-fraction", type=float, default=0.05)
    prep.add_argument("--workers", type=int, default=2)
    prep.add_argument("--seed", type=int, default=12345)
    prep.set_defaults(func=_data_prepare)

    demo = commands.add_parser("demo", help="the main job: a small real end-to-end run")
    demo.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    demo.add_argument("--max-steps", type=int, default=500, help="pre-training steps (8-20 minutes on 2 cores)")
    demo.add_argument("--minilm", action="store_true", help="instead: sentence similarities with the real "
                      "all-MiniLM-L6-v2 weights")
    demo.set_defaults(func=_demo)

    enc = commands.add_parser("encode", help="one vector per input line, as JSON lines")
    enc.add_argument("--model", required=True, help="model directory (transformers layout)")
    enc.add_argument("--input", required=True, help="text file, one input per line")
    enc.add_argument("--output", default="-", help="output file (default: stdout)")
    enc.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean")
    enc.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    enc.set_defaults(func=_encode)
    pre = commands.add_parser("pretrain", help="pre-train BERT (MLM + NSP) from raw text; resumable; "
                              "use torchrun for several processes")
    _add_pretrain_arguments(pre)
    pre.set_defaults(func=_pretrain)

    tok = commands.add_parser("tokenizer", help="train a WordPiece vocabulary")
    tok_commands = tok.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    tok_train = tok_commands.add_parser("train", help="learn vocab.txt + tokenizer.json from text")
    tok_train.add_argument("--input", nargs="+", required=True, metavar="FILE")
    tok_train.add_argument("--vocab-size", type=int, required=True)
    tok_train.add_argument("--out", required=True)
    tok_train.add_argument("--no-lowercase", action="store_true")
    tok_train.add_argument("--format", default="auto")
    tok_train.set_defaults(func=_tokenizer_train)

    fm = commands.add_parser("fill-mask", help="predict the [MASK] tokens of sentences")
    fm.add_argument("--model", required=True, help="a pre-trained model directory (with MLM head)")
    fm.add_argument("--top-k", type=int, default=5)
    fm.add_argument("texts", nargs="+", help='sentences with [MASK], e.g. "Paris is the [MASK] of France."')
    fm.set_defaults(func=_fill_mask)
    ft = commands.add_parser("finetune", help="fine-tune a pre-trained model on a task")
    ft.add_argument("--task", required=True, choices=["classify", "regress", "choice", "tag", "qa"])
    ft.add_argument("--model", required=True, help="pre-trained model directory (transformers layout)")
    ft.add_argument("--train", required=True)
    ft.add_argument("--dev", required=True)
    ft.add_argument("--test")
    ft.add_argument("--out", required=True)
    ft.add_argument("--epochs", type=int, default=3)
    ft.add_argument("--lr", type=float, default=3e-5)
    ft.add_argument("--batch-size", type=int, default=32)
    ft.add_argument("--warmup", type=float, default=0.1, help="fraction of steps for linear warm-up")
    ft.add_argument("--weight-decay", type=float, default=0.01)
    ft.add_argument("--dropout", type=float, help="override dropout (default: the checkpoint's, 0.1)")
    ft.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run per seed; mean ± std reported")
    ft.add_argument("--max-train-examples", type=int, help="use only the first N training examples")
    ft.add_argument("--freeze-encoder", action="store_true", help="feature-based: train only the task layer")
    ft.add_argument("--features", choices=["last", "concat-last-4", "scalar-mix"], default="concat-last-4",
                    help="with --freeze-encoder: which layer outputs feed the task layer")
    ft.add_argument("--ignore-mismatched-sizes", action="store_true",
                    help="re-initialise a checkpoint head whose number of labels differs")
    ft.add_argument("--no-progress", dest="progress", action="store_false")
    _add_data_arguments(ft)
    ft.set_defaults(func=_finetune)

    ev = commands.add_parser("evaluate", help="metrics of a fine-tuned model on a labelled file")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--output", help="also write the metrics (JSON) here")
    _add_data_arguments(ev)
    ev.set_defaults(func=_evaluate)

    pr = commands.add_parser("predict", help="one JSON line of predictions per input line")
    pr.add_argument("--model", required=True)
    pr.add_argument("--input", required=True, help="JSON lines with the task's fields, or plain text lines")
    pr.add_argument("--output", required=True)
    _add_data_arguments(pr)
    pr.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as e:  # user errors: one clear line, no traceback
        sys.exit(f"bertforge {args.command}: error: {e}")
