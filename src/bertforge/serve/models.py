"""What a model directory serves, and the adapters between requests and ``inference/``: a request becomes rows
(one model input each) and a way to finish it, the batching queue runs batches of rows through ``inference/``,
and the finish turns each request's outputs into its answer. No model arithmetic lives here.

- A fine-tuned task model of any family ``predict`` reads (BERT, XLNet and ELECTRA heads; ELMo, static-vector,
  feature-based and +BiLSTM task models) serves the route that reads its task's inputs (``TASK_ROUTES``:
  classify, also for regress; tag; qa; choice), answered by ``inference.answers``: the task's own encode and
  decode, as ``predict``, with each answer's detail.
- A pre-trained model of a family the registry lets serve (``SERVE``: BERT, ModernBERT) serves what its family
  can (``ModelFamily.can``): fill-mask from its trained masked-LM head (``inference.fill_mask``), embed from its
  encoder (``inference.encode``) and attention (``inference.attention``), as ``bertforge
  fill-mask``, ``encode`` and ``attention`` answer for the same directory.
- The encoder inside a fine-tuned task model, where its family encodes (BERT, ELECTRA's BERT encoder, ModernBERT),
  serves embed and attention too, as the family's pre-trained encoder does.
Every model serves tokenize. A route the model cannot serve is answered 400, naming the model's family and task
(``refusal``); a directory that would serve nothing but tokenize (a pre-trained XLNet, ELMo, ELECTRA or static
model) is refused at start-up.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.data.options import DataOptions
from bertforge.errors import UsageError, require_dir
from bertforge.export.layout import find_export
from bertforge.inference.answers import Source, answer, prepare, settings_of
from bertforge.inference.attention import attention_maps
from bertforge.inference.encode import encode_rows, pooling_problem, untrained_pooler
from bertforge.inference.fill_mask import mask_guesses, untrained_head
from bertforge.inference.predictor import Predictor, run_model
from bertforge.io.jsonl import read_json_object
from bertforge.model.registry import (ATTENTION, ENCODE, ENCODER, FAMILIES, FILL_MASK, MASKED_LM, SERVE,
                                      read_config_file)
from bertforge.model.task_model import TASK_FILE
from bertforge.serve.bodies import Parsed, RequestError
from bertforge.tasks import Task
from bertforge.tokenization import BertTokenizer

ROUTES = ("embed", "classify", "tag", "qa", "choice", "fill-mask", "attention", "tokenize")
# How the names of masked-LM checkpoints end (BertForPreTraining, transformers' BertForMaskedLM,
# ModernBertForMaskedLM): a pre-trained directory so named holds a masked-LM head, loaded as its family's MASKED_LM.
MLM_SUFFIXES = ("ForPreTraining", "ForMaskedLM")
ENCODER_ROUTES = {"embed": ENCODE, "attention": ATTENTION}  # the routes an encoder answers, and the capability each
LONG_INPUT_FACTOR = 16  # tag and qa read long inputs in windows: up to this many times the input limit
MAX_ATTENTION_VALUES = 1 << 21  # layers x heads x tokens^2 in one /attention answer
NO_LIMIT = 1 << 40
DATA_OPTIONS = {f.name for f in fields(DataOptions)}  # body options that are DataOptions (qa's max_answer_length)


@dataclass(frozen=True)
class TaskRoute:
    """A route that answers fine-tuned tasks: the input fields it reads (a task is served at the route whose fields
    are its ``input_fields``), how one request input becomes what ``predict`` reads from an input line (a JSON
    record, or a plain text), and which text of an input, if any, is read in overlapping windows (and may be
    ``Limits.long_tokens`` long) rather than cut to one model row."""

    fields: tuple[str, ...]
    source: Callable[[tuple], Source]
    long_input: int | None = None  # its index in the parsed input
    long_field: str = ""  # its field in the input, for errors

    @property
    def windows(self) -> bool:
        return self.long_input is not None


TASK_ROUTES = {
    "classify": TaskRoute(("text", "text_pair"), lambda x: {"text": x[0], "text_pair": x[1]}),
    "tag": TaskRoute(("words",), lambda x: x[0], long_input=0),  # a text: its words as predict reads a plain line
    "qa": TaskRoute(("question", "context"), lambda x: {"question": x[0], "context": x[1]}, long_input=1,
                    long_field=".context"),
    "choice": TaskRoute(("context", "endings"), lambda x: {"context": x[0], "endings": list(x[1])}),
}
# How transformers' names of fine-tuning heads end, in every family (BertFor..., XLNetFor...): a config.json whose
# architecture ends so is a fine-tuned task model (one fine-tuned elsewhere says so only this way).
HEAD_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                 "ForQuestionAnsweringSimple", "ForMultipleChoice")


def route_of(task: Task) -> str:
    """The route that serves ``task``: the one that reads its input fields."""
    for route, spec in TASK_ROUTES.items():
        if spec.fields == task.input_fields:
            return route
    raise UsageError(f"no route reads the inputs of task {task.name} ({', '.join(task.input_fields)})",
                     flag="--model")


@dataclass
class Row:
    """One model input: ids, token types, and what to compute from it (pooling, [MASK] positions...)."""

    input_ids: list[int]
    token_type_ids: list[int]
    option: Any = None

    @property
    def length(self) -> int:
        return len(self.input_ids)


def tokens(row) -> int:
    """What a row costs a padded batch: its tokens, or a multiple-choice feature's choices x its longest row."""
    nested = row.input_ids and isinstance(row.input_ids[0], list)
    return len(row.input_ids) * row.length if nested else row.length


@dataclass
class Work:
    """A request turned into rows of one operation, and how to turn their outputs into the answer."""

    op: str  # "embed", "fill-mask", "attention" or "task"
    rows: Sequence[Any]
    finish: Callable[[list], list]

    @property
    def lengths(self) -> list[int]:
        return [tokens(row) for row in self.rows]


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


def serving_families(can: str) -> str:
    """The families whose pre-trained models serve ``can`` (for messages: "bert or modernbert")."""
    return " or ".join(f.name for f in FAMILIES.values() if SERVE in f.can and can in f.can)


def inner_encoder(model) -> tuple[torch.nn.Module | None, frozenset[str]]:
    """The encoder inside a torch task model (or the model itself) of a family whose encoder ``encode`` reads (BERT,
    whose forward ELECTRA's encoder runs, or ModernBERT), with that family's capabilities; (None, {}) for another
    family's encoder (XLNet, ELMo) or an ONNX graph."""
    if not isinstance(model, torch.nn.Module):
        return None, frozenset()
    encoders = [(f.heads[ENCODER], f.can) for f in FAMILIES.values() if ENCODE in f.can and ENCODER in f.heads]
    for module in model.modules():
        for cls, can in encoders:
            if isinstance(module, cls):
                return module, can
    return None, frozenset()


class ServedModel:
    """A model directory loaded for serving: which routes it answers, and how (``prepare`` then ``run``)."""

    def __init__(self, path: Path, family: str, config, tokenizer: BertTokenizer, *, backend: str = "torch",
                 predictor: Predictor | None = None, mlm: torch.nn.Module | None = None,
                 encoder: torch.nn.Module | None = None, can: frozenset[str] = frozenset(), note: str | None = None):
        """``mlm``: a masked LM with a trained head (its family's MASKED_LM model); ``encoder``: its family's
        ENCODER model; ``can``: the registry capabilities of the family whose forward ``encoder`` runs, which say
        the routes it answers (``ENCODER_ROUTES``)."""
        self.path, self.family, self.config, self.tokenizer, self.backend = path, family, config, tokenizer, backend
        self.predictor, self.mlm, self.encoder, self.can, self.note = predictor, mlm, encoder, can, note
        self.task = predictor.task if predictor is not None else None
        self.task_route = route_of(self.task) if self.task is not None else None
        self.settings = settings_of(predictor.model) if predictor is not None else {}

    # --- loading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch", device: str = "cpu") -> "ServedModel":
        """``backend``: torch, or an ONNX one (``Predictor.load``'s), for fine-tuned task models only."""
        path = (require_dir(path, flag="--model", what="model directory") if backend == "torch"
                else find_export(path, backend, flag="--model"))
        record, config = read_config_file(path)
        family = record.name
        raw = read_json_object(path / "config.json")
        architecture = (raw.get("architectures") or [""])[0]
        fine_tuned = raw.get("bertforge_task") is not None or architecture.endswith(HEAD_SUFFIXES)
        if fine_tuned or (path / TASK_FILE).is_file():
            predictor = Predictor.load(path, device=device, backend=backend)
            # The encoder inside (ELECTRA's runs BERT's forward) answers what its family's pre-trained encoder does.
            encoder, can = inner_encoder(predictor.model)
            return cls(path, family, predictor.model.config, predictor.tokenizer, backend=backend,
                       predictor=predictor, encoder=encoder, can=can)
        if backend != "torch":
            raise UsageError(f"the {backend} backend serves fine-tuned task models; {path} is a pre-trained "
                             f"encoder ({architecture or 'no architecture in config.json'})", flag="--backend",
                             hint="use --backend torch")
        if SERVE not in record.can:
            raise UsageError(f"{path} is a pre-trained {family} model (config.json model_type): it would serve "
                             "tokenize alone, since serve answers a fine-tuned task model of any family, but embed "
                             f"and fill-mask only from a pre-trained {serving_families(ENCODE)} model",
                             flag="--model", hint="serve a model fine-tuned from it (bertforge finetune --model ...)")
        tokenizer = BertTokenizer.from_pretrained(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an encoder-only checkpoint has no heads: reported below
            if FILL_MASK in record.can and architecture.endswith(MLM_SUFFIXES):
                mlm = record.heads[MASKED_LM].from_pretrained(path).to(device).eval()
                encoder = getattr(mlm, mlm.base_model_prefix)  # the encoder inside: embed reads it as encode does
                if not untrained_head(mlm, record.masked_lm_unused):
                    return cls(path, family, config, tokenizer, mlm=mlm, encoder=encoder, can=record.can)
                note = "its masked-LM head was never trained, so fill-mask is not served"
                return cls(path, family, config, tokenizer, encoder=encoder, can=record.can, note=note)
            encoder = record.heads[ENCODER].from_pretrained(path).to(device).eval()
            return cls(path, family, config, tokenizer, encoder=encoder, can=record.can)

    # --- what it serves ------------------------------------------------------------------------------

    @property
    def task_name(self) -> str:
        """The model's task as the error messages and /info name it."""
        if self.task is not None:
            return self.task.name
        return "fill-mask" if self.mlm is not None else "embed"

    @property
    def routes(self) -> tuple[str, ...]:
        served = {"tokenize"}
        if self.task_route is not None:
            served.add(self.task_route)
        if self.mlm is not None:
            served.add("fill-mask")
        if self.encoder is not None:
            served |= {route for route, need in ENCODER_ROUTES.items() if need in self.can}
        return tuple(r for r in ROUTES if r in served)

    def refusal(self, route: str) -> str:
        """Why ``route`` is not served (for a 400): the model's family and task, and what the route needs."""
        if route in TASK_ROUTES:
            need = f"/{route} answers a model fine-tuned for a task that reads {', '.join(TASK_ROUTES[route].fields)}"
        elif self.backend != "torch":
            need = f"the {self.backend} backend runs the task's graph alone"
        elif route == "fill-mask":
            need = self.note or (f"fill-mask needs a pre-trained BERT model ({serving_families(FILL_MASK)}) with its "
                                 "trained masked-LM head")
        elif self.encoder is None:
            need = (f"/{route} reads a {serving_families(ENCODER_ROUTES[route])} encoder, which this {self.family} model "
                    "does not have")
        else:  # an encoder whose family cannot answer the route (ModernBERT's attention maps)
            need = (f"/{route} is served for {serving_families(ENCODER_ROUTES[route])} models alone, not for "
                    f"{self.family} ones")
        return (f"/{route} is not served by this model (family {self.family}, its task is {self.task_name}): {need}; "
                f"it serves {', '.join('/' + r for r in self.routes)}")

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels if self.predictor is not None else []

    @property
    def device(self) -> torch.device:
        return self.predictor.device if self.predictor is not None else next(self.encoder.parameters()).device

    @property
    def positions(self) -> int | None:
        """The model's position limit (max_position_embeddings); None for a family without one (XLNet, ELMo)."""
        return getattr(self.config, "max_position_embeddings", None)

    def limits(self, max_input_tokens: int, truncate: bool, attention_values: int = MAX_ATTENTION_VALUES) -> Limits:
        tokens = min(max_input_tokens, self.positions or max_input_tokens)
        return Limits(tokens, tokens * LONG_INPUT_FACTOR, truncate, attention_values)

    def info(self) -> dict[str, Any]:
        config: dict[str, Any] = {"model_type": self.family, "max_position_embeddings": self.positions}
        if self.encoder is not None:
            c = self.encoder.config
            config.update(layers=c.num_hidden_layers, hidden_size=c.hidden_size, heads=c.num_attention_heads,
                          vocab_size=c.vocab_size, pooler=getattr(self.encoder, "pooler", None) is not None
                          and not untrained_pooler(self.encoder))
        return {"model": self.path.name, "path": str(self.path), "family": self.family, "task": self.task_name,
                "routes": list(self.routes), "labels": self.labels, "backend": self.backend, "note": self.note,
                "mask_token": self.tokenizer.special_tokens["mask_token"], "config": config}

    # --- requests to rows ---------------------------------------------------------------------------

    def prepare(self, route: str, parsed: Parsed, limits: Limits) -> Work | list:
        """The rows of a request and how to finish it (tokenize: its answer at once); RequestError (413, 422) for
        inputs that cannot run."""
        if route in TASK_ROUTES:
            return self._prepare_task(parsed, limits)
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

    def _encode(self, pairs: Sequence[tuple[str, str | None]], where: Sequence[str], limits: Limits
                ) -> list[dict[str, list]]:
        """Each text or pair as ids, types, offsets and the special-token mask; 413 past the limit."""
        inputs = [(self._prefix(a, limits.tokens), None if b is None else self._prefix(b, limits.tokens))
                  for a, b in pairs]
        singles = [k for k, (_, b) in enumerate(inputs) if b is None]
        paired = [k for k, (_, b) in enumerate(inputs) if b is not None]
        out: list[dict[str, list] | None] = [None] * len(inputs)
        for group, pair in ((singles, False), (paired, True)):
            if not group:
                continue
            enc = self.tokenizer([inputs[k][0] for k in group], [inputs[k][1] for k in group] if pair else None,
                                 max_length=limits.tokens if limits.truncate else NO_LIMIT, truncation=True,
                                 padding=False, return_offsets=True, return_special_tokens_mask=True,
                                 return_tensors=None)
            for j, k in enumerate(group):
                n = len(enc["input_ids"][j])
                if n > limits.tokens:
                    raise too_long(where[k], n, limits.tokens, at_least=inputs[k] != tuple(pairs[k]))
                out[k] = {key: enc[key][j] for key in ("input_ids", "token_type_ids", "offset_mapping",
                                                       "special_tokens_mask")}
        return out

    def _prepare_tokenize(self, parsed: Parsed, limits: Limits) -> list[dict[str, Any]]:
        """Answered at once, without the model."""
        result = []
        for enc in self._encode(parsed.inputs, parsed.fields, limits):
            result.append({"tokens": self.tokenizer.convert_ids_to_tokens(enc["input_ids"]),
                           "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                           "offsets": [None if special else list(o)
                                       for o, special in zip(enc["offset_mapping"], enc["special_tokens_mask"])]})
        return result

    def _prepare_embed(self, parsed: Parsed, limits: Limits) -> Work:
        pooling, normalize = parsed.options["pooling"], parsed.options["normalize"]
        problem = pooling_problem(self.encoder, pooling)
        if problem:
            raise RequestError(422, f"{problem}; use mean or cls", "pooling")
        rows = [Row(e["input_ids"], e["token_type_ids"], (pooling, normalize))
                for e in self._encode(parsed.inputs, parsed.fields, limits)]
        # 8 decimals: float32 precision for the usual values, half the JSON of full float reprs, and faster
        return Work("embed", rows, lambda outputs: [np.round(v.astype(np.float64), 8).tolist() for v in outputs])

    def _prepare_fill_mask(self, parsed: Parsed, limits: Limits) -> Work:
        top_k = min(parsed.options["top_k"], self.tokenizer.vocab_size)
        mask_id, rows = self.tokenizer.mask_token_id, []
        for enc, where in zip(self._encode(parsed.inputs, parsed.fields, limits), parsed.fields):
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
        c, layer, head = self.encoder.config, parsed.options["layer"], parsed.options["head"]
        for name, value, count in (("layer", layer, c.num_hidden_layers), ("head", head, c.num_attention_heads)):
            if value is not None and value >= count:
                raise RequestError(422, f"the model has {count} {name}s (0 to {count - 1}), got {value}", name)
        layers = list(range(c.num_hidden_layers)) if layer is None else [layer]
        heads = list(range(c.num_attention_heads)) if head is None else [head]
        encoded = self._encode(parsed.inputs, parsed.fields, limits)
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

    def _prepare_task(self, parsed: Parsed, limits: Limits) -> Work:
        """The task's features of the request's inputs, as ``predict`` reads them; answered by
        ``inference.answers`` (the task's decode, with each answer's detail)."""
        spec = TASK_ROUTES[self.task_route]
        inputs = [spec.source(item) for item in self._within_limits(parsed, limits, spec)]
        opts = DataOptions(max_length=limits.window_tokens if spec.windows else min(limits.tokens, 4096),
                           **{k: v for k, v in parsed.options.items() if k in DATA_OPTIONS})
        prepared = prepare(self.task, self.tokenizer, inputs, opts)
        return Work("task", prepared.features,
                    lambda outputs: answer(self.task, prepared, outputs, self.settings, opts))

    def _within_limits(self, parsed: Parsed, limits: Limits, spec: TaskRoute) -> list[tuple]:
        """The inputs of a task route, checked against the limits: 413 for one too long, or cut when truncating.

        A text read in windows (a tagged text, a qa context) may be ``long_tokens`` pieces; other inputs are cut
        by the task's encoding to rows of ``tokens``, so here they are only refused when not truncating."""
        if spec.windows:
            i = spec.long_input
            return [item[:i] + (self._long_text(item[i], where + spec.long_field, limits),) + item[i + 1:]
                    for item, where in zip(parsed.inputs, parsed.fields)]
        if not limits.truncate:
            pairs, where = [], []
            for item, at in zip(parsed.inputs, parsed.fields):
                rows = [(item[0], b) for b in item[1]] if isinstance(item[1], tuple) else [item]  # choice: a row each
                pairs += rows
                where += [at] * len(rows)
            self._encode(pairs, where, limits)
        return list(parsed.inputs)

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

    # --- rows to outputs (in the worker thread) --------------------------------------------------------------

    @torch.inference_mode()
    def run(self, op: str, rows: list) -> list:
        """One output per row, for a batch of rows of one operation."""
        pad = self.tokenizer.pad_token_id
        if op == "task":
            p = self.predictor
            return run_model(p.model, p.task, rows, len(rows), pad, p.device)
        ids, types = [r.input_ids for r in rows], [r.token_type_ids for r in rows]
        if op == "embed":
            return list(encode_rows(self.encoder, ids, types, pad, [r.option[0] for r in rows],
                                    [r.option[1] for r in rows]).numpy())
        if op == "fill-mask":
            return mask_guesses(self.mlm, ids, types, pad, [r.option[0] for r in rows], [r.option[1] for r in rows])
        if op == "attention":
            return attention_maps(self.encoder, ids, types, pad, [r.option[0] for r in rows],
                                  [r.option[1] for r in rows])
        raise ValueError(f"unknown operation {op!r}")


def too_long(where: str, n: int, limit: int, what: str = "tokens (special tokens included)",
             at_least: bool = False) -> RequestError:
    return RequestError(413, f"the input has {'at least ' if at_least else ''}{n:,} {what}, more than the limit "
                        f"of {limit:,}; send a shorter text or \"truncate\": true", where)
