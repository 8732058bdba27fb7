"""What a model directory can do, and doing it: requests become rows (one model input each), batches of
rows run through the model, and each request's outputs become its answer.

A directory is one of three kinds:
- a fine-tuned task model (config.json names ``bertforge_task``, or its architecture is a task head):
  its task's route (classify also for regression, tag, qa), through the task table like ``predict``;
- a pre-trained BERT with a trained masked-LM head (``BertForPreTraining``): fill-mask;
- a plain encoder (``BertModel``, such as MiniLM).
Every kind also serves embed, attention and tokenize, whenever its encoder runs in torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.config import BertConfig
from bertforge.data.batching import pad_rows
from bertforge.data.examples import QAExample, TaggedSentence, TextExample
from bertforge.data.options import DataOptions
from bertforge.data.squad import choose_answer
from bertforge.errors import UsageError, require_dir
from bertforge.export.layout import find_export
from bertforge.inference.encode import untrained_pooler
from bertforge.inference.predictor import Predictor, run_model
from bertforge.model import BertForPreTraining, BertModel
from bertforge.model.families import model_type
from bertforge.model.task_model import TASK_FILE
from bertforge.serve.bodies import Parsed, RequestError
from bertforge.tasks import TASKS
from bertforge.tasks.qa import candidate_spans
from bertforge.tasks.tag import entity_spans, stitch_word_scores, word_spans
from bertforge.tokenization import BertTokenizer

ROUTES = ("embed", "classify", "tag", "qa", "fill-mask", "attention", "tokenize")
TASK_ROUTES = {"classify": "classify", "regress": "classify", "tag": "tag", "qa": "qa"}  # task -> its route
MLM_ARCHITECTURES = ("BertForPreTraining", "BertForMaskedLM")
LONG_INPUT_FACTOR = 16  # tag and qa read long inputs in windows: up to this many times the input limit
MAX_ATTENTION_VALUES = 1 << 21  # layers x heads x tokens^2 in one /attention answer
NO_LIMIT = 1 << 40


@dataclass
class Row:
    """One model input: ids, token types, and what to compute from it (pooling, [MASK] positions...)."""

    input_ids: list[int]
    token_type_ids: list[int]
    option: Any = None

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass
class Work:
    """A request turned into rows of one operation, and how to turn their outputs into the answer."""

    op: str  # "embed", "fill-mask", "attention" or "task"
    rows: Sequence[Any]
    finish: Callable[[list], list]

    @property
    def lengths(self) -> list[int]:
        return [row.length for row in self.rows]


@dataclass(frozen=True)
class Limits:
    """How long inputs may be: per model row, and for the inputs that tag and qa read in windows."""

    tokens: int  # pieces per input with special tokens (min of --max-input-tokens and the model's positions)
    long_tokens: int  # pieces of a tagged text or a qa context
    truncate: bool
    attention_values: int = MAX_ATTENTION_VALUES  # layers x heads x tokens^2 in one attention answer

    @property
    def window_tokens(self) -> int:
        """Pieces per window of tag and qa (``predict``'s default, at most the limit)."""
        return min(DataOptions().max_length, self.tokens)


class ServedModel:
    """A model directory loaded for serving: which routes it answers, and how (``prepare`` then ``run``)."""

    def __init__(self, path: Path, config: BertConfig, tokenizer: BertTokenizer, *, backend: str = "torch",
                 predictor: Predictor | None = None, mlm: BertForPreTraining | None = None,
                 encoder: BertModel | None = None, note: str | None = None):
        self.path, self.config, self.tokenizer, self.backend = path, config, tokenizer, backend
        self.predictor, self.mlm, self.encoder, self.note = predictor, mlm, encoder, note
        self.task = predictor.task if predictor is not None else None

    # --- loading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch", device: str = "cpu") -> "ServedModel":
        """``backend``: torch, or an ONNX one (``Predictor.load``'s), for fine-tuned task models only."""
        path = (require_dir(path, flag="--model", what="model directory") if backend == "torch"
                else find_export(path, backend, flag="--model"))
        family = model_type(path)
        if family != "bert":
            raise UsageError(f"{path} is a {family} model (config.json model_type); serving reads BERT models",
                             flag="--model")
        config = BertConfig.from_json_file(path / "config.json")
        tokenizer = BertTokenizer.from_pretrained(path)
        architecture = (config.extra.get("architectures") or [""])[0]
        heads = {t.head.__name__ for t in TASKS.values()}
        if (config.extra.get("bertforge_task") is not None or architecture in heads
                or (path / TASK_FILE).is_file()):
            predictor = Predictor.load(path, device=device, backend=backend)
            encoder = getattr(predictor.model, "bert", None)  # a torch head's encoder: embed and attention too
            encoder = encoder if isinstance(encoder, BertModel) else None
            return cls(path, config, tokenizer, backend=backend, predictor=predictor, encoder=encoder)
        if backend != "torch":
            raise UsageError(f"the {backend} backend serves fine-tuned task models; {path} is a pre-trained "
                             f"encoder ({architecture or 'no architecture in config.json'})", flag="--backend",
                             hint="use --backend torch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an encoder-only checkpoint has no heads: reported below
            if architecture in MLM_ARCHITECTURES:
                mlm = BertForPreTraining.from_pretrained(path).to(device).eval()
                if not any(n.startswith("cls.predictions") for n in mlm.newly_initialized):
                    return cls(path, config, tokenizer, mlm=mlm, encoder=mlm.bert)
                note = "its masked-LM head was never trained, so fill-mask is not served"
                return cls(path, config, tokenizer, encoder=mlm.bert, note=note)
            return cls(path, config, tokenizer, encoder=BertModel.from_pretrained(path).to(device).eval())

    # --- what it serves ------------------------------------------------------------------------------

    @property
    def task_name(self) -> str:
        """The model's task as the error messages and /info name it."""
        if self.task is not None:
            return self.task.name
        return "fill-mask" if self.mlm is not None else "embed"

    @property
    def routes(self) -> tuple[str, ...]:
        served = set()
        if self.task is not None and self.task.name in TASK_ROUTES:
            served.add(TASK_ROUTES[self.task.name])
        if self.mlm is not None:
            served.add("fill-mask")
        if self.encoder is not None:
            served |= {"embed", "attention"}
        served.add("tokenize")
        return tuple(r for r in ROUTES if r in served)

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels if self.predictor is not None else []

    @property
    def device(self) -> torch.device:
        return next((self.encoder if self.encoder is not None else self.predictor.model).parameters()).device

    def limits(self, max_input_tokens: int, truncate: bool, attention_values: int = MAX_ATTENTION_VALUES) -> Limits:
        tokens = min(max_input_tokens, self.config.max_position_embeddings)
        return Limits(tokens, tokens * LONG_INPUT_FACTOR, truncate, attention_values)

    def info(self) -> dict[str, Any]:
        c = self.config
        return {"model": self.path.name, "path": str(self.path), "task": self.task_name, "routes": list(self.routes),
                "labels": self.labels, "backend": self.backend, "note": self.note,
                "mask_token": self.tokenizer.special_tokens["mask_token"],
                "config": {"layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
                           "heads": c.num_attention_heads, "vocab_size": c.vocab_size,
                           "max_position_embeddings": c.max_position_embeddings,
                           "pooler": self.encoder is not None and self.encoder.pooler is not None
                           and not untrained_pooler(self.encoder)}}

    # --- requests to rows ---------------------------------------------------------------------------

    def prepare(self, route: str, parsed: Parsed, limits: Limits) -> Work:
        """The rows of a request and how to finish it; RequestError (413, 422) for inputs that cannot run."""
        return getattr(self, "_prepare_" + route.replace("-", "_"))(parsed, limits)

    def _prefix(self, text: str, pieces: int) -> str:
        """A prefix of ``text`` ending at whitespace with more than ``pieces`` word pieces, or all of it.

        Pieces never cross whitespace, so the prefix's pieces are the first pieces of the text: enough to
        refuse or cut an input without tokenizing all of a megabyte.
        """
        k = 8 * pieces + 64
        while k < len(text):
            cut = max(text.rfind(c, 0, k) for c in " \t\n\r")
            if cut > 0 and len(self.tokenizer.piece_ids([text[:cut]])[0]) > pieces:
                return text[:cut]
            k *= 4
        return text

    def _encode(self, parsed: Parsed, limits: Limits) -> list[dict[str, list]]:
        """Each input (text or pair) as ids, types, offsets and the special-token mask; 413 past the limit."""
        inputs = [(self._prefix(a, limits.tokens), None if b is None else self._prefix(b, limits.tokens))
                  for a, b in parsed.inputs]
        singles = [k for k, (_, b) in enumerate(inputs) if b is None]
        pairs = [k for k, (_, b) in enumerate(inputs) if b is not None]
        out: list[dict[str, list] | None] = [None] * len(inputs)
        for group, paired in ((singles, False), (pairs, True)):
            if not group:
                continue
            enc = self.tokenizer([inputs[k][0] for k in group], [inputs[k][1] for k in group] if paired else None,
                                 max_length=limits.tokens if limits.truncate else NO_LIMIT, truncation=True,
                                 padding=False, return_offsets=True, return_special_tokens_mask=True,
                                 return_tensors=None)
            for j, k in enumerate(group):
                n = len(enc["input_ids"][j])
                if n > limits.tokens:
                    raise too_long(parsed.fields[k], n, limits.tokens, at_least=inputs[k] != parsed.inputs[k])
                out[k] = {key: enc[key][j] for key in ("input_ids", "token_type_ids", "offset_mapping",
                                                       "special_tokens_mask")}
        return out

    def _prepare_tokenize(self, parsed: Parsed, limits: Limits) -> list[dict[str, Any]]:
        """Answered at once, without the model."""
        result = []
        for enc in self._encode(parsed, limits):
            result.append({"tokens": self.tokenizer.convert_ids_to_tokens(enc["input_ids"]),
                           "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                           "offsets": [None if special else list(o)
                                       for o, special in zip(enc["offset_mapping"], enc["special_tokens_mask"])]})
        return result

    def _prepare_embed(self, parsed: Parsed, limits: Limits) -> Work:
        pooling, normalize = parsed.options["pooling"], parsed.options["normalize"]
        if pooling == "pooler" and self.encoder.pooler is None:
            raise RequestError(422, "this model has no pooler layer; use mean or cls", "pooling")
        if pooling == "pooler" and untrained_pooler(self.encoder):
            raise RequestError(422, "this model's pooler was never trained (its weights file has no pooler), so its "
                                    "vectors would be random; use mean or cls", "pooling")
        rows = [Row(e["input_ids"], e["token_type_ids"], (pooling, normalize)) for e in self._encode(parsed, limits)]
        # 8 decimals: float32 precision for the usual values, half the JSON of full float reprs, and faster
        return Work("embed", rows, lambda outputs: [np.round(v.astype(np.float64), 8).tolist() for v in outputs])

    def _prepare_fill_mask(self, parsed: Parsed, limits: Limits) -> Work:
        top_k = min(parsed.options["top_k"], self.tokenizer.vocab_size)
        mask_id, rows = self.tokenizer.mask_token_id, []
        for enc, where in zip(self._encode(parsed, limits), parsed.fields):
            positions = [i for i, t in enumerate(enc["input_ids"]) if t == mask_id]
            if not positions:
                mask = self.tokenizer.special_tokens["mask_token"]
                after = " (after truncation)" if limits.truncate else ""
                raise RequestError(422, f"no {mask} token in the input{after}; write {mask} where a word should be "
                                   f"guessed", where)
            rows.append(Row(enc["input_ids"], enc["token_type_ids"], (positions, top_k)))

        def finish(outputs: list) -> list:
            return [[[{"token": token, "token_id": int(i), "score": float(p)}
                      for i, p, token in zip(ids, probs, self.tokenizer.convert_ids_to_tokens(ids.tolist()))]
                     for ids, probs in per_mask] for per_mask in outputs]

        return Work("fill-mask", rows, finish)

    def _prepare_attention(self, parsed: Parsed, limits: Limits) -> Work:
        c, layer, head = self.config, parsed.options["layer"], parsed.options["head"]
        for name, value, count in (("layer", layer, c.num_hidden_layers), ("head", head, c.num_attention_heads)):
            if value is not None and value >= count:
                raise RequestError(422, f"the model has {count} {name}s (0 to {count - 1}), got {value}", name)
        layers = list(range(c.num_hidden_layers)) if layer is None else [layer]
        heads = list(range(c.num_attention_heads)) if head is None else [head]
        encoded = self._encode(parsed, limits)
        for enc, where in zip(encoded, parsed.fields):
            n = len(enc["input_ids"])
            if len(layers) * len(heads) * n * n > limits.attention_values:
                raise RequestError(413, f"the attention of {n} tokens over {len(layers)} layers x {len(heads)} heads "
                                   f"is more than {limits.attention_values:,} values; ask for one \"layer\" or "
                                   f"\"head\", or send a shorter text", where)
        rows = [Row(e["input_ids"], e["token_type_ids"], (layers, heads)) for e in encoded]

        def finish(outputs: list) -> list:
            return [{"tokens": self.tokenizer.convert_ids_to_tokens(row.input_ids),
                     "token_type_ids": row.token_type_ids, "layers": layers, "heads": heads,
                     "attention": np.round(att.astype(np.float64), 6).tolist()}  # (layers, heads, T, T)
                    for row, att in zip(rows, outputs)]

        return Work("attention", rows, finish)

    def _prepare_classify(self, parsed: Parsed, limits: Limits) -> Work:
        if not limits.truncate:
            self._encode(parsed, limits)  # 413 for a too-long input (the task's encoding would cut it)
        examples = [TextExample(a, b, None, str(k)) for k, (a, b) in enumerate(parsed.inputs)]
        feats = self.task.encode(self.tokenizer, examples, None, DataOptions(max_length=min(limits.tokens, 4096)))
        names = self.labels

        def finish(outputs: list) -> list:
            if self.task.name == "regress":
                return [{"score": float(o[0])} for o in outputs]
            result = []
            for logits in outputs:
                probs = softmax(logits)
                order = np.argsort(-probs, kind="stable")
                result.append({"label": names[order[0]], "score": float(probs[order[0]]),
                               "scores": [{"label": names[i], "score": float(probs[i])} for i in order]})
            return result

        return Work("task", feats, finish)

    def _long_text(self, value: str, where: str, limits: Limits) -> str:
        """A text that tag or qa reads in windows: 413 past ``limits.long_tokens`` pieces, or cut there."""
        prefix = self._prefix(value, limits.long_tokens)
        offsets = self.tokenizer(prefix, max_length=NO_LIMIT, truncation=False, padding=False,
                                 return_offsets=True, return_tensors=None)["offset_mapping"][0][1:-1]
        if len(offsets) <= limits.long_tokens:
            return value
        if not limits.truncate:
            raise too_long(where, len(offsets), limits.long_tokens, what="pieces (read in windows)",
                           at_least=prefix != value)
        return value[:offsets[limits.long_tokens - 1][1]]

    def _prepare_tag(self, parsed: Parsed, limits: Limits) -> Work:
        texts = [self._long_text(a, where, limits) for (a, _), where in zip(parsed.inputs, parsed.fields)]
        spans = [word_spans(t) for t in texts]
        examples = [TaggedSentence([t[s:e] for s, e in sp], None, str(k))
                    for k, (t, sp) in enumerate(zip(texts, spans))]
        feats = self.task.encode(self.tokenizer, examples, None, self._window_options(limits))
        names = self.labels

        def finish(outputs: list) -> list:
            result = []
            for text, sp, words in zip(texts, spans, stitch_word_scores(feats, outputs)):
                probs = [softmax(w) for w in words]
                tags = [names[int(p.argmax())] for p in probs]
                scores = [float(p.max()) for p in probs]
                entities = [{"entity": kind, "text": text[sp[first][0]:sp[last][1]], "start": sp[first][0],
                             "end": sp[last][1], "score": float(np.mean(scores[first:last + 1]))}
                            for kind, first, last in entity_spans(tags)]
                result.append({"entities": entities,
                               "words": [{"word": text[s:e], "start": s, "end": e, "tag": t, "score": p}
                                         for (s, e), t, p in zip(sp, tags, scores)]})
            return result

        return Work("task", feats, finish)

    def _prepare_qa(self, parsed: Parsed, limits: Limits) -> Work:
        examples = [QAExample(str(k), q, self._long_text(c, f"{where}.context", limits))
                    for k, ((q, c), where) in enumerate(zip(parsed.inputs, parsed.fields))]
        opts = self._window_options(limits)
        feats = self.task.encode(self.tokenizer, examples, None, opts)
        version_2 = bool(self.config.extra.get("bertforge_squad_v2", False))
        max_answer_length = parsed.options["max_answer_length"]

        def finish(outputs: list) -> list:
            candidates = candidate_spans(examples, feats, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs],
                                         n_best=opts.n_best, max_answer_length=max_answer_length)
            result = []
            for example, (spans, null) in zip(examples, candidates):
                answer, _ = choose_answer(example.context, spans, null if version_2 else None, opts.null_threshold)
                scores = [s.score for s in spans] + ([null] if version_2 else [])
                probs = softmax(np.array(scores)) if scores else np.zeros(0)
                if answer or (spans and not version_2):
                    best = spans[0]
                    result.append({"answer": answer, "start": best.start_char, "end": best.end_char,
                                   "score": float(probs[0])})
                else:
                    result.append({"answer": "", "start": None, "end": None,
                                   "score": float(probs[-1]) if version_2 and len(probs) else 0.0})
            return result

        return Work("task", feats, finish)

    @staticmethod
    def _window_options(limits: Limits) -> DataOptions:
        """How tag and qa read their inputs: ``predict``'s defaults (windows of 128 pieces, at most the limit)."""
        return DataOptions(max_length=limits.window_tokens)

    # --- rows to outputs (in the worker thread) --------------------------------------------------------------

    @torch.inference_mode()
    def run(self, op: str, rows: list) -> list:
        """One output per row, for a batch of rows of one operation."""
        if op == "task":
            p = self.predictor
            return run_model(p.model, p.task, rows, len(rows), self.tokenizer.pad_token_id, p.device)
        device = self.device
        ids = torch.from_numpy(pad_rows([r.input_ids for r in rows], self.tokenizer.pad_token_id)).to(device)
        types = torch.from_numpy(pad_rows([r.token_type_ids for r in rows], 0)).to(device)
        mask = torch.from_numpy(pad_rows([[1] * r.length for r in rows], 0)).to(device)
        if op == "embed":
            return self._embed(rows, ids, types, mask)
        if op == "fill-mask":
            return self._fill_mask(rows, ids, types, mask)
        if op == "attention":
            out = self.encoder(ids, types, mask, output_attentions=True)
            attentions = torch.stack(out.attentions, 1).float().cpu()  # (B, L, A, T, T)
            return [attentions[b][row.option[0]][:, row.option[1]][..., :row.length, :row.length].numpy()
                    for b, row in enumerate(rows)]
        raise ValueError(f"unknown operation {op!r}")

    def _embed(self, rows: list[Row], ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> list:
        out = self.encoder(ids, types, mask)
        hidden = out.last_hidden_state  # (B, T, H)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        means = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)  # as inference.encode
        vectors = []
        for b, row in enumerate(rows):
            pooling, normalize = row.option
            v = {"mean": means, "cls": hidden[:, 0], "pooler": out.pooler_output}[pooling][b:b + 1].float().cpu()
            vectors.append((torch.nn.functional.normalize(v, dim=-1) if normalize else v)[0].numpy())
        return vectors

    def _fill_mask(self, rows: list[Row], ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> list:
        hidden = self.mlm.bert(ids, types, mask).last_hidden_state  # (B, T, H)
        at = [(b, p) for b, row in enumerate(rows) for p in row.option[0]]
        selected = hidden[[b for b, _ in at], [p for _, p in at]]  # (M, H)
        probs = self.mlm.cls.predictions(selected, self.mlm.bert.embeddings.word_embeddings.weight).float().softmax(-1)
        top = probs.topk(max(row.option[1] for row in rows), dim=-1)
        values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
        out, m = [], 0
        for row in rows:
            positions, k = row.option
            out.append([(indices[m + j, :k], values[m + j, :k]) for j in range(len(positions))])
            m += len(positions)
        return out


def too_long(where: str, n: int, limit: int, what: str = "tokens (special tokens included)",
             at_least: bool = False) -> RequestError:
    return RequestError(413, f"the input has {'at least ' if at_least else ''}{n:,} {what}, more than the limit "
                        f"of {limit:,}; send a shorter text or \"truncate\": true", where)


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()
