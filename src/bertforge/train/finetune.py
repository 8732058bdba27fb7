"""Fine-tuning: one loop for every task family, best-on-dev selection, several seeds, mean ± std.

The paper's recipe (§4): all parameters tuned (or, feature-based, the encoder frozen), AdamW with
10% linear warm-up then linear decay, dropout 0.1, a few epochs; the model kept is the epoch with
the best dev score. Optimizer, schedule and logs are the pre-training machinery's.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bertforge.data import features as F
from bertforge.data.tasks import check_labels
from bertforge.tasks import DataOptions, Task, get_task
from bertforge.tokenization import BertTokenizer
from bertforge.train.checkpoint import save_model_dir
from bertforge.train.logs import MetricsLog, NonFiniteGuard, Throughput, plot_curves, read_metrics
from bertforge.train.optim import build_optimizer
from bertforge.train.schedule import build_schedule, warmup_ratio


@dataclass
class FinetuneArgs:
    task: str
    model: str
    train: str
    dev: str
    out: str
    test: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    epochs: int = 3
    lr: float = 3e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    dropout: float | None = None
    seeds: list[int] = field(default_factory=lambda: [1])
    max_train_examples: int | None = None
    freeze_encoder: bool = False
    features: str = "concat-last-4"
    ignore_mismatched_sizes: bool = False
    log_every: int = 20
    progress: bool = True


def load_model(task: Task, path: str | Path, labels: list[str], *, feature_based: bool = False,
               features: str = "concat-last-4", ignore_mismatched_sizes: bool = False,
               dropout: float | None = None):
    """The task's head on the checkpoint at ``path``, with label names when the task has them."""
    overrides: dict = {"bertforge_task": task.name}
    if task.name == "regress":
        overrides.update(num_labels=1, problem_type="regression", id2label={"0": "score"})
    elif task.has_labels:
        overrides.update(num_labels=len(labels), id2label={str(i): n for i, n in enumerate(labels)},
                         label2id={n: i for i, n in enumerate(labels)})
    if dropout is not None:
        overrides.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    head = task.head
    if feature_based:
        if task.feature_head is None:
            raise ValueError(f"feature-based use (--freeze-encoder) is for classify and tag, not {task.name}")
        head = task.feature_head
        overrides["bertforge_features"] = features
    kwargs = {"ignore_mismatched_sizes": ignore_mismatched_sizes} if "num_labels" in overrides else {}
    return head.from_pretrained(path, **kwargs, **overrides)


@torch.no_grad()
def run_model(model, task: Task, feats: list, batch_size: int, pad_id: int, device: torch.device
              ) -> list[np.ndarray]:
    """The task outputs of every feature, in order; batches sorted by length to avoid padding."""
    was_training = model.training
    model.eval()
    results: list[np.ndarray | None] = [None] * len(feats)
    for batch_idx in F.bucketed_batches([_length(f) for f in feats], batch_size, shuffle=False, seed=0, epoch=0):
        batch = F.collate([feats[i] for i in batch_idx], pad_id)
        out = model(**_model_inputs(batch, device))
        values = task.outputs(out).float().cpu().numpy()
        for row, i in enumerate(batch_idx):
            n = len(feats[i].input_ids) if values.ndim >= 3 else None  # per-token outputs: trim the padding
            results[i] = values[row][:n] if n is not None else values[row]
    model.train(was_training)
    return results


def _length(feature) -> int:
    ids = feature.input_ids
    return max(len(r) for r in ids) if ids and isinstance(ids[0], list) else len(ids)


def _model_inputs(batch: dict, device: torch.device, with_targets: bool = False) -> dict:
    keys = ["input_ids", "token_type_ids", "attention_mask"]
    if with_targets:
        keys += [k for k in ("labels", "start_positions", "end_positions") if k in batch]
    return {k: batch[k].to(device) for k in keys}


def predict_examples(model, task: Task, tokenizer: BertTokenizer, examples: list, opts: DataOptions,
                     batch_size: int, device: torch.device) -> tuple[list, list[np.ndarray]]:
    """(per-example predictions, raw outputs per feature) of a model on examples."""
    feats = task.encode(tokenizer, examples, getattr(model, "label2id", None) if task.has_labels else None, opts)
    outputs = run_model(model, task, feats, batch_size, tokenizer.pad_token_id, device)
    id2label = model.id2label if task.has_labels else {}
    return task.decode(examples, feats, outputs, id2label, opts), outputs


def finetune(args: FinetuneArgs) -> dict:
    """Fine-tune for each seed; write OUT/model (best seed), eval_results.json, metrics.jsonl."""
    task = get_task(args.task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = BertTokenizer.from_pretrained(args.model)
    opts = args.data
    train_examples = task.read(args.train, opts)
    if args.max_train_examples:
        train_examples = train_examples[:args.max_train_examples]
    dev_examples = task.read(args.dev, opts)
    test_examples = task.read(args.test, opts) if args.test else None
    labels = task.label_names(train_examples)
    if task.has_labels:
        for path, examples in ((args.dev, dev_examples), (args.test, test_examples)):
            if examples is not None:
                check_labels(labels, task.label_names(examples), path, train_path=args.train)
    label2id = {n: i for i, n in enumerate(labels)} if task.has_labels else None
    train_feats = task.encode(tokenizer, train_examples, label2id, opts)
    lengths = [_length(f) for f in train_feats]
    print(f"{task.name}: {len(train_examples):,} training examples ({len(train_feats):,} inputs), "
          f"{len(dev_examples):,} dev" + (f", {len(test_examples):,} test" if test_examples else "")
          + (f"; labels {labels}" if task.has_labels else ""), flush=True)

    log = MetricsLog(out / "metrics.jsonl", resume_from_step=-1)  # a fresh log for this run
    per_seed, best_overall = {}, None
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = load_model(task, args.model, labels, feature_based=args.freeze_encoder, features=args.features,
                           ignore_mismatched_sizes=args.ignore_mismatched_sizes, dropout=args.dropout).to(device)
        steps_per_epoch = math.ceil(len(train_feats) / args.batch_size)
        total = steps_per_epoch * args.epochs
        optimizer = build_optimizer(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
        scheduler = build_schedule(optimizer, warmup_ratio(args.warmup, total), total, "linear")
        guard, throughput = NonFiniteGuard(), Throughput()
        best, best_state, step, started = None, None, 0, time.perf_counter()
        bar = tqdm(total=total, desc=f"fine-tuning (seed {seed})", unit="step", disable=not args.progress,
                   dynamic_ncols=True)
        for epoch in range(args.epochs):
            model.train()
            for batch_idx in F.bucketed_batches(lengths, args.batch_size, shuffle=True, seed=seed, epoch=epoch):
                batch = F.collate([train_feats[i] for i in batch_idx], tokenizer.pad_token_id)
                loss = model(**_model_inputs(batch, device, with_targets=True)).loss
                if guard.check(loss.detach(), step):
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                rate = throughput.update(int(batch["attention_mask"].sum()))
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", tok_s=f"{rate:,.0f}")
                if step % args.log_every == 0:
                    log.log(step, seed=seed, epoch=epoch, loss=loss.item(), lr=scheduler.get_last_lr()[0],
                            grad_norm=grad_norm, tokens_per_s=rate, elapsed_s=time.perf_counter() - started)
            predictions, _ = predict_examples(model, task, tokenizer, dev_examples, opts, args.eval_batch_size, device)
            scores = task.score(dev_examples, predictions, labels)
            log.log(step, seed=seed, epoch=epoch, **{f"dev_{k}": v for k, v in scores.items()})
            bar.write(f"seed {seed} epoch {epoch + 1}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()
                                                                       if isinstance(v, float)))
            if best is None or scores[task.selection_metric] > best[task.selection_metric]:
                best, best_state = scores, copy.deepcopy(model.state_dict())
        bar.close()
        model.load_state_dict(best_state)
        result = {"dev": best, "best_epoch_metric": task.selection_metric}
        if test_examples is not None:
            predictions, _ = predict_examples(model, task, tokenizer, test_examples, opts, args.eval_batch_size,
                                              device)
            result["test"] = task.score(test_examples, predictions, labels)
            result["test_predictions"] = predictions
        per_seed[seed] = result
        if best_overall is None or best[task.selection_metric] > best_overall[0]:
            best_overall = (best[task.selection_metric], seed)
            save_model_dir(model, tokenizer, out / "model")
        del model, optimizer
    log.close()
    summary = _summarise(per_seed, args, task)
    if task.name == "classify":
        split = "test" if test_examples is not None else "dev"
        examples = test_examples if test_examples is not None else dev_examples
        if split == "test":
            predictions = per_seed[best_overall[1]]["test_predictions"]
        else:
            model = load_model(task, out / "model", labels).to(device)
            predictions, _ = predict_examples(model, task, tokenizer, examples, opts, args.eval_batch_size, device)
        from bertforge.metrics import save_confusion_matrix

        save_confusion_matrix([str(e.label) for e in examples], predictions, labels, out / "confusion_matrix.png")
    for result in per_seed.values():
        result.pop("test_predictions", None)
    summary["best_seed"] = best_overall[1]
    (out / "eval_results.json").write_text(json.dumps(summary, indent=2))
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r or any(k.startswith("dev_") for k in r)]
    if records:
        plot_curves(records, out / "curves.png")
    (out / "finetune_args.json").write_text(json.dumps(asdict(args), indent=2, default=str))
    return summary


def _summarise(per_seed: dict, args: FinetuneArgs, task: Task) -> dict:
    """Every metric as mean and std over seeds (test when given, else dev), plus each seed's figures."""
    split = "test" if args.test else "dev"
    summary: dict = {"task": task.name, "split": split, "seeds": list(per_seed)}
    names = [k for k, v in next(iter(per_seed.values()))[split].items() if isinstance(v, (int, float))]
    for name in names:
        values = [r[split][name] for r in per_seed.values()]
        summary[name] = statistics.fmean(values)
        summary[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    summary["per_seed"] = {str(s): r for s, r in per_seed.items()}
    return summary


def load_finetuned(path: str | Path):
    """(task, model) of a fine-tuned model directory, from its config.json."""
    from bertforge.config import BertConfig
    from bertforge.tasks import TASKS

    config = BertConfig.from_json_file(Path(path) / "config.json")
    name = config.extra.get("bertforge_task")
    architecture = (config.extra.get("architectures") or [""])[0]
    if name is None:  # a checkpoint fine-tuned elsewhere: infer the task from its head
        by_head = {t.head.__name__: t.name for t in TASKS.values() if t.name != "regress"}
        name = by_head.get(architecture)
        if name == "classify" and config.extra.get("problem_type") == "regression":
            name = "regress"
    if name is None:
        raise ValueError(f"{path}: cannot tell which task this model was fine-tuned for "
                         f"(architectures: {architecture or 'none'}); fine-tune it with `bertforge finetune`")
    task = get_task(name)
    head = task.feature_head if "FeatureBased" in architecture else task.head
    return task, head.from_pretrained(path)


def evaluate_file(model_dir: str | Path, data: str | Path, opts: DataOptions, batch_size: int = 128) -> dict:
    """Metrics of a fine-tuned model on a labelled file."""
    task, model = load_finetuned(model_dir)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    examples = task.read(data, opts)
    labels = [model.id2label[i] for i in sorted(model.id2label)] if task.has_labels else []
    if task.has_labels:
        check_labels(labels, task.label_names(examples), data, train_path=f"{model_dir} (its label set)")
    predictions, _ = predict_examples(model, task, tokenizer, examples, opts, batch_size, torch.device("cpu"))
    return {"task": task.name, "data": str(data), "examples": len(examples),
            **task.score(examples, predictions, labels)}


def predict_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path, opts: DataOptions,
                 batch_size: int = 128) -> int:
    """One JSON line of predictions per input line (JSON objects, or plain text for single texts)."""
    task, model = load_finetuned(model_dir)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    examples = read_prediction_inputs(task, input_path)
    predictions, outputs = predict_examples(model, task, tokenizer, examples, opts, batch_size,
                                            torch.device("cpu"))
    per_example = outputs if len(outputs) == len(examples) else [None] * len(examples)
    tmp = Path(output_path).with_name(f".{Path(output_path).name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for prediction, output in zip(predictions, per_example):
            f.write(json.dumps(task.to_json(prediction, output), ensure_ascii=False) + "\n")
    tmp.replace(output_path)
    return len(examples)


def read_prediction_inputs(task: Task, path: str | Path) -> list:
    """Unlabelled examples, one per line: a JSON object with the task's fields, or plain text."""
    from bertforge.data.squad import QAExample
    from bertforge.data.tasks import ChoiceExample, DataFormatError, TaggedSentence, TextExample

    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            record = None
            if line.lstrip().startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"{path}:{lineno}: malformed JSON: {e.msg}", path, lineno) from None

            def get(name: str, default=None):
                if record is None or (name not in record and default is None):
                    raise DataFormatError(f"{path}:{lineno}: missing field {name!r}", path, lineno)
                return record.get(name, default)

            key = f"line-{lineno}"
            if task.name in ("classify", "regress"):
                text = line if record is None else get("text")
                pair = None if record is None else record.get("text_pair")
                examples.append(TextExample(text, pair, None, key))
            elif task.name == "tag":
                if record is not None:
                    words = get("words")
                else:
                    words = line.split() if " " in line.strip() else list(line.strip())  # CJK: characters
                examples.append(TaggedSentence(words, None, key))
            elif task.name == "qa":
                examples.append(QAExample(key, get("question"), get("context"), [], False))
            else:
                examples.append(ChoiceExample(get("context"), get("endings"), None, key))
    if not examples:
        raise ValueError(f"{path} has no input lines")
    return examples
