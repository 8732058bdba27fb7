"""Google's BERT checkpoints to bertforge models and back: Google's variable names (``bert/encoder/layer_N/...``,
``cls/predictions/...``, run_classifier.py's ``output_weights``, run_squad.py's ``cls/squad/...``) against ours
(`transformers`' names), every shape checked against the config, over the numpy reader and writer of
TensorFlow's format in ``tf_checkpoint``.

``hidden_act: "gelu"`` stays bertforge's (and `transformers`') exact, erf GELU, as `transformers`' own
converter has it; Google's later modeling.py computes a tanh approximation (about 1e-3 apart).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bertforge.errors import CheckpointError, ConfigError
from bertforge.io.atomic import atomic_dir, atomic_path, atomic_write_text
from bertforge.io.tf_checkpoint import TFCheckpoint, write_tf_checkpoint

if TYPE_CHECKING:
    from bertforge.config import BertConfig
    from bertforge.model import BertPreTrainedModel

# The model class each kind of Google checkpoint becomes, and the variable that marks its head.
TASKS: dict[str, str] = {"pretraining": "BertForPreTraining", "classify": "BertForSequenceClassification",
                         "qa": "BertForQuestionAnswering", "encoder": "BertModel"}
_HEAD_MARKERS = (("qa", "cls/squad/output_weights"), ("classify", "output_weights"),
                 ("pretraining", "cls/predictions/output_bias"))
# Training state, not model: Google's AdamWeightDecayOptimizer slots, tf.train.AdamOptimizer's, the step.
_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1")
_TRAINING_NAMES = ("global_step", "beta1_power", "beta2_power")
# Google's bert_config.json keys, in its order.
GOOGLE_CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
                      "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
                      "num_hidden_layers", "type_vocab_size", "vocab_size")
# Tensors of ours with no variable in Google's code: buffers and the tied MLM decoder.
_DERIVED = ("bert.embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def is_training_state(name: str) -> bool:
    """An optimizer slot or step counter, which a conversion skips."""
    return name in _TRAINING_NAMES or name.endswith(_OPTIMIZER_SUFFIXES)


def google_bert_names(num_layers: int) -> dict[str, tuple[str, bool]]:
    """Google's variable name -> (our weight name, transposed?) for ``num_layers`` layers and every head
    Google's code writes. Dense kernels are [in, out] in TensorFlow and [out, in] in torch; the heads'
    ``output_weights`` are already [out, in] (Google multiplies by their transpose)."""
    names: dict[str, tuple[str, bool]] = {}

    def dense(tf: str, ours: str) -> None:
        names[f"{tf}/kernel"], names[f"{tf}/bias"] = (f"{ours}.weight", True), (f"{ours}.bias", False)

    def norm(tf: str, ours: str) -> None:
        names[f"{tf}/gamma"], names[f"{tf}/beta"] = (f"{ours}.weight", False), (f"{ours}.bias", False)

    def output(tf: str, ours: str) -> None:
        names[f"{tf}output_weights"], names[f"{tf}output_bias"] = (f"{ours}.weight", False), (f"{ours}.bias", False)

    for part in ("word", "token_type", "position"):
        names[f"bert/embeddings/{part}_embeddings"] = (f"bert.embeddings.{part}_embeddings.weight", False)
    norm("bert/embeddings/LayerNorm", "bert.embeddings.LayerNorm")
    for i in range(num_layers):
        tf, ours = f"bert/encoder/layer_{i}", f"bert.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            dense(f"{tf}/attention/self/{part}", f"{ours}.attention.self.{part}")
        dense(f"{tf}/attention/output/dense", f"{ours}.attention.output.dense")
        norm(f"{tf}/attention/output/LayerNorm", f"{ours}.attention.output.LayerNorm")
        dense(f"{tf}/intermediate/dense", f"{ours}.intermediate.dense")
        dense(f"{tf}/output/dense", f"{ours}.output.dense")
        norm(f"{tf}/output/LayerNorm", f"{ours}.output.LayerNorm")
    dense("bert/pooler/dense", "bert.pooler.dense")
    dense("cls/predictions/transform/dense", "cls.predictions.transform.dense")
    norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm")
    names["cls/predictions/output_bias"] = ("cls.predictions.bias", False)
    output("cls/seq_relationship/", "cls.seq_relationship")
    output("", "classifier")  # run_classifier.py's head
    output("cls/squad/", "qa_outputs")  # run_squad.py's head
    return names


def _listed(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _model_key(name: str, task: str) -> str:
    return name.removeprefix("bert.") if task == "encoder" else name


@dataclass
class TFConversion:
    """What a conversion from a TensorFlow checkpoint did, for the user and for tests."""

    task: str
    architecture: str
    tensors: int  # variables converted
    parameters: int
    skipped: list[str] = field(default_factory=list)  # optimizer slots, step counters
    unused: list[str] = field(default_factory=list)  # BERT variables the chosen model has no place for
    unknown: list[str] = field(default_factory=list)  # variables that are not Google's BERT names


def detect_task(names: set[str] | dict) -> str:
    """The head a checkpoint carries: SQuAD, a classifier, the pre-training heads, else the encoder alone."""
    return next((task for task, marker in _HEAD_MARKERS if marker in names), "encoder")


def bert_from_tf(checkpoint: TFCheckpoint, config: BertConfig, task: str = "auto",
                 config_source: str = "bert_config.json") -> tuple[BertPreTrainedModel, TFConversion]:
    """A bertforge model holding the weights of a checkpoint written by Google's BERT code.

    The sizes come from ``config``; every variable's shape is checked against them. ``task`` picks
    the head (``auto``: the one the checkpoint carries); a classifier's label count comes from its
    ``output_weights``. Missing weights, or layers the config does not have, are errors; variables that
    are not BERT's are listed in a warning.
    """
    import torch

    import bertforge.model as models

    names = set(checkpoint.entries)
    task = detect_task(names) if task == "auto" else task
    if task not in TASKS:
        raise ConfigError(f"task must be auto or one of {', '.join(TASKS)}, got {task!r}")
    layers = sorted({int(m.group(1)) for n in names if (m := re.match(r"bert/encoder/layer_(\d+)/", n))})
    if layers and len(layers) != config.num_hidden_layers:
        raise CheckpointError(f"{checkpoint.prefix}: the checkpoint has {len(layers)} encoder layers (layer_"
                              f"{layers[0]}..layer_{layers[-1]}) but {config_source} says num_hidden_layers "
                              f"{config.num_hidden_layers}")
    if task == "classify":
        if "output_weights" not in names:
            raise CheckpointError(f"{checkpoint.prefix}: no classifier in the checkpoint (output_weights)",
                                  hint="choose the task its head was trained for, or 'encoder'")
        labels = checkpoint.entries["output_weights"].shape[0]
        config.extra.setdefault("num_labels", labels)
        if labels == 1:
            config.extra.setdefault("problem_type", "regression")
    model = getattr(models, TASKS[task])(config)
    own = model.state_dict()
    mapping = google_bert_names(config.num_hidden_layers)
    report = TFConversion(task, TASKS[task], 0, 0)
    wanted: dict[str, tuple[str, bool]] = {}
    for name in sorted(names):
        if is_training_state(name):
            report.skipped.append(name)
        elif name not in mapping:
            report.unknown.append(name)
        elif _model_key(mapping[name][0], task) not in own:
            report.unused.append(name)
        else:
            wanted[name] = mapping[name]
    found = {_model_key(ours, task) for ours, _ in wanted.values()}
    missing = [tf for tf, (ours, _) in mapping.items() if _model_key(ours, task) in own and tf not in wanted]
    if missing:
        unknown = f"; it has variables that are not Google's BERT names: {_listed(report.unknown, 4)}" \
            if report.unknown else ""
        hint = None if task == "encoder" else "convert a checkpoint without heads as task 'encoder'"
        raise CheckpointError(f"{checkpoint.prefix}: the checkpoint lacks {len(missing)} variables of a "
                              f"{TASKS[task]}: {_listed(missing)}{unknown}", hint=hint)
    if found != set(own):  # every weight of the model has a Google name: a gap is a bug in the name map
        raise CheckpointError(f"{checkpoint.prefix}: no Google name for {_listed(sorted(set(own) - found))}")

    wanted = {tf: wanted[tf] for tf in mapping if tf in wanted}  # the model's order: the first mismatch is telling
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for tf, (ours, transposed) in wanted.items():
        expected = tuple(own[_model_key(ours, task)].shape)
        expected = expected[::-1] if transposed else expected
        if checkpoint.entries[tf].shape != expected:
            mismatched[tf] = (checkpoint.entries[tf].shape, expected)
    if mismatched:
        tf, (theirs, expected) = next(iter(mismatched.items()))
        more = f" ({len(mismatched) - 1} more variables differ)" if len(mismatched) > 1 else ""
        raise CheckpointError(f"{config_source}: sizes disagree with the checkpoint: {tf} has shape {list(theirs)} "
                              f"in the checkpoint but {list(expected)} by the config{more}", mismatched=mismatched,
                              hint="pass the bert_config.json released with this checkpoint")

    state = {}
    for tf, (ours, transposed) in wanted.items():
        array = checkpoint.read(tf)
        state[_model_key(ours, task)] = torch.from_numpy(np.ascontiguousarray(array.T if transposed else array))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    report.tensors, report.parameters = len(state), sum(int(t.numel()) for t in state.values())
    if report.unknown:
        warnings.warn(f"{checkpoint.prefix}: ignored {len(report.unknown)} variables that are not Google's BERT "
                      f"names: {_listed(report.unknown)}", stacklevel=2)
    if report.unused:
        warnings.warn(f"{checkpoint.prefix}: a {TASKS[task]} has no place for {len(report.unused)} variables: "
                      f"{_listed(report.unused)}", stacklevel=2)
    return model, report


def convert_from_tf(prefix: str | os.PathLike, config_path: str | os.PathLike, vocab_path: str | os.PathLike,
                    out: str | os.PathLike, task: str = "auto", lowercase: bool = True) -> TFConversion:
    """Write a model directory (config.json, model.safetensors, the tokenizer) from a Google BERT
    checkpoint, its ``bert_config.json`` and ``vocab.txt``, atomically."""
    from bertforge.config import BertConfig
    from bertforge.tokenization import BertTokenizer

    config = BertConfig.from_json_file(config_path)  # Google's keys are transformers' names too
    checkpoint = TFCheckpoint(prefix)
    tokenizer = BertTokenizer(vocab_path, lowercase=lowercase, model_max_length=config.max_position_embeddings)
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"vocab_size is {config.vocab_size} but {vocab_path} has {tokenizer.vocab_size} tokens",
                          source=config_path, hint="pass the vocab.txt released with this checkpoint")
    model, report = bert_from_tf(checkpoint, config, task, config_source=str(config_path))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return report


def bert_to_tf(state: Mapping[str, Any], num_layers: int, source: str = "model") -> dict[str, np.ndarray]:
    """Our weights (with or without the ``bert.`` prefix) under Google's names, kernels transposed,
    as float32 arrays. Weights with no name in Google's code are an error, listed."""
    reverse = {ours: (tf, transposed) for tf, (ours, transposed) in google_bert_names(num_layers).items()}
    tensors: dict[str, np.ndarray] = {}
    unknown = []
    for name, tensor in state.items():
        key = name if name.startswith(("bert.", "cls.", "classifier.", "qa_outputs.")) else "bert." + name
        if key in _DERIVED:
            continue
        if key not in reverse:
            unknown.append(name)
            continue
        array = tensor.detach().cpu().float().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, np.float32)
        tf, transposed = reverse[key]
        tensors[tf] = np.ascontiguousarray(array.T if transposed else array, dtype=np.float32)
    if "cls/predictions/output_bias" not in tensors and "cls.predictions.decoder.bias" in state:
        tensors["cls/predictions/output_bias"] = np.asarray(state["cls.predictions.decoder.bias"], np.float32)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} weights have no name in Google's BERT code: "
                              f"{_listed(sorted(unknown))}", hint="only BERT encoders with the pre-training, "
                              "classifier or SQuAD heads convert to TensorFlow")
    return tensors


def tf_output_paths(prefix: str | os.PathLike) -> list[Path]:
    """The files ``convert_to_tf`` writes: the checkpoint, and bert_config.json and vocab.txt beside it."""
    prefix = Path(prefix)
    return [prefix.with_name(prefix.name + ".index"), prefix.with_name(prefix.name + ".data-00000-of-00001"),
            prefix.parent / "bert_config.json", prefix.parent / "vocab.txt"]


def convert_to_tf(model_dir: str | os.PathLike, prefix: str | os.PathLike) -> dict[str, Any]:
    """Write a model directory's BERT as a TensorFlow checkpoint in Google's names, with its
    ``bert_config.json`` and ``vocab.txt`` beside it, for Google's code (or any TF1 BERT) to load.

    Google's code computes GELU with a tanh approximation and knows no other: every GELU variant is
    written as ``gelu`` (bertforge's is the exact one; the two differ by about 1e-3).
    """
    from bertforge.config import BertConfig
    from bertforge.io.weights import read_state_dict

    model_dir = Path(model_dir)
    config = BertConfig.from_json_file(model_dir / "config.json")
    if config.is_decoder:
        raise ConfigError("is a left-to-right model (is_decoder); Google's BERT code has no such model",
                          source=model_dir / "config.json")
    tensors = bert_to_tf(read_state_dict(model_dir), config.num_hidden_layers, source=str(model_dir))
    google = {key: getattr(config, key) for key in GOOGLE_CONFIG_KEYS}
    if config.hidden_act.startswith("gelu"):  # Google's code knows one "gelu" (its tanh approximation)
        google["hidden_act"] = "gelu"
    index, data, config_path, vocab_path = tf_output_paths(prefix)
    existed = config_path.exists()
    written = write_tf_checkpoint(prefix, tensors)
    try:
        atomic_write_text(config_path, json.dumps(google, indent=2) + "\n")
        with atomic_path(vocab_path) as tmp:
            shutil.copyfile(model_dir / "vocab.txt", tmp)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if not existed:  # only what this call wrote
            config_path.unlink(missing_ok=True)
        raise
    return {"tensors": len(tensors), "parameters": sum(int(a.size) for a in tensors.values()),
            "files": [index, data, config_path, vocab_path]}
