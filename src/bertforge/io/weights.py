"""Read, match and write weight files in the `transformers` layout (names, prefix, tied weights)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bertforge.errors import CheckpointError
from bertforge.io import checksums
from bertforge.io.atomic import atomic_path

# Tensors some checkpoints carry that are not parameters of ours: buffers, and the tied MLM decoder
# (its weight is the word-embedding matrix, its bias is `cls.predictions.bias`).
DERIVED_KEYS = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
# The encoder proper: a checkpoint that lacks any of these is broken, not merely head-less.
ENCODER_PREFIXES = ("embeddings.", "encoder.")


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``, else ``pytorch_model.bin`` (loaded with weights_only); a file
    whose SHA-256 differs from the one recorded when it was saved is an error (``io/checksums.py``)."""
    directory = Path(directory)
    safetensors_path, bin_path = directory / "model.safetensors", directory / "pytorch_model.bin"
    if safetensors_path.is_file():
        checksums.verify(safetensors_path)
        try:
            return load_file(safetensors_path)
        except Exception as e:  # safetensors raises several types for a damaged file
            raise CheckpointError(f"{safetensors_path}: cannot read safetensors file: {e}") from None
    if bin_path.is_file():
        checksums.verify(bin_path)
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{bin_path}: cannot read PyTorch weights: {e}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{bin_path}: expected a dict of tensors, got {type(state).__name__}")
        return state
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin",
                          hint="a model directory holds config.json and its weights")


def _rename(key: str, model_keys: set[str], prefix: str) -> str:
    """Map a checkpoint key onto our name, adding or removing the ``bert.`` prefix as needed."""
    if key in model_keys:
        return key
    if key.startswith(prefix) and key[len(prefix):] in model_keys:
        return key[len(prefix):]
    if prefix + key in model_keys:
        return prefix + key
    return key


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str,
              drop_mismatched: bool = False) -> list[str]:
    """Copy ``state`` into ``model``: shape mismatches are errors, missing heads a warning.

    ``drop_mismatched`` keeps the model's fresh tensors where the checkpoint's have another shape (a
    classifier with another number of labels) and lists them in a warning instead of failing.
    Returns the names of the weights that were newly initialised (missing or dropped).
    """
    prefix = getattr(model, "base_model_prefix", "bert") + "."
    own = model.state_dict()
    own_keys = set(own)
    renamed: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in state.items():
        name = _rename(key, own_keys, prefix)
        if name in own_keys:
            renamed[name] = tensor
        elif not any(name.removeprefix(prefix) == d or name == d for d in DERIVED_KEYS):
            unexpected.append(key)
    bias_key = next((k for k in own_keys if k.endswith("cls.predictions.bias")), None)
    if bias_key and bias_key not in renamed and "cls.predictions.decoder.bias" in state:
        renamed[bias_key] = state["cls.predictions.decoder.bias"]

    mismatched = {name: (tuple(tensor.shape), tuple(own[name].shape))
                  for name, tensor in renamed.items() if tensor.shape != own[name].shape}
    if mismatched and not drop_mismatched:
        name, (theirs, ours) = next(iter(mismatched.items()))
        more = f" ({len(mismatched) - 1} more tensors differ)" if len(mismatched) > 1 else ""
        raise CheckpointError(f"{source}: tensor {name!r} has shape {theirs} in the checkpoint but {ours} "
                              f"in the model{more}", mismatched=mismatched)
    for name in mismatched:
        del renamed[name]
    missing = sorted(own_keys - set(renamed) - set(mismatched))
    broken = [k for k in missing if k.removeprefix(prefix).startswith(ENCODER_PREFIXES)]
    if broken:
        raise CheckpointError(f"{source}: checkpoint lacks encoder weights: {', '.join(broken[:8])}"
                              + (f" and {len(broken) - 8} more" if len(broken) > 8 else ""))
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in renamed.items()}})
    warn_fresh(source, missing, mismatched, unexpected)
    return sorted(missing + list(mismatched))


def load_prefixed(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                  drop_mismatched: bool = False) -> list[str]:
    """Copy ``state`` into ``model`` by name alone, the ``base_model_prefix`` matched either way (the families whose
    checkpoints hold no derived tensors: ModernBERT, XLNet); returns the names of the weights left at their fresh
    initialisation.

    A missing encoder tensor (any under the prefix, or any at all in a bare encoder) or a shape mismatch is a
    CheckpointError (mismatches are dropped with a warning under ``drop_mismatched``); a missing head or an
    unused tensor is a warning. A tied tensor follows what it is tied to, whatever the checkpoint holds for it,
    as in transformers.
    """
    prefix = model.base_model_prefix + "."
    own = model.state_dict()
    prefixed = any(k.startswith(prefix) for k in own)
    tied = _tied_names(model)
    matched: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in state.items():
        name = key
        if name not in own:
            if prefixed and prefix + name in own:
                name = prefix + name
            elif not prefixed and name.startswith(prefix):
                name = name[len(prefix):]
        if name in tied:
            continue
        if name in own:
            matched[name] = tensor
        else:
            unexpected.append(key)
    mismatched = {n: (tuple(t.shape), tuple(own[n].shape)) for n, t in matched.items() if t.shape != own[n].shape}
    if mismatched and not drop_mismatched:
        listed = ", ".join(f"{n} (checkpoint {a}, model {b})" for n, (a, b) in sorted(mismatched.items())[:8])
        raise CheckpointError(f"{source}: {len(mismatched)} tensors have another shape in the checkpoint than "
                              f"in the model: {listed}", mismatched=mismatched,
                              hint="pass ignore_mismatched_sizes=True to re-initialise those tensors (they "
                                   "then need training), or a config override (e.g. num_labels) that fits")
    for name in mismatched:
        del matched[name]
    missing = sorted(set(own) - set(matched) - set(mismatched) - tied)
    encoder = [k for k in missing if k.startswith(prefix) or not prefixed]
    if encoder:
        raise CheckpointError(f"{source}: checkpoint lacks encoder weights: {', '.join(encoder[:8])}"
                              + (f" and {len(encoder) - 8} more" if len(encoder) > 8 else ""))
    with torch.no_grad():
        for name, tensor in matched.items():
            own[name].copy_(tensor)
    warn_fresh(source, missing, mismatched, unexpected)
    return sorted(missing + list(mismatched))


def _tied_names(model: nn.Module) -> set[str]:
    """State names that alias an earlier tensor (a decoder's matrix tied to the embedding)."""
    seen: set[int] = set()
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen.add(id(tensor))
    return tied


def warn_fresh(source: str, missing: list[str], mismatched: dict[str, tuple], unexpected: list[str]) -> None:
    """One warning each for weights newly initialised (missing or of another shape) and tensors ignored."""
    if missing:
        warnings.warn(f"{source}: {len(missing)} weights not in the checkpoint were newly initialised "
                      f"(train them before use): {', '.join(missing)}", stacklevel=4)
    if mismatched:
        listed = ", ".join(f"{n} (checkpoint {a}, model {b})" for n, (a, b) in sorted(mismatched.items()))
        warnings.warn(f"{source}: {len(mismatched)} weights whose shape differs from the checkpoint were "
                      f"newly initialised (train them before use): {listed}", stacklevel=4)
    if unexpected:
        warnings.warn(f"{source}: ignored {len(unexpected)} checkpoint tensors the model does not use: "
                      f"{', '.join(sorted(unexpected))}", stacklevel=4)


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a safetensors file atomically; tied tensors are stored once, under their owner's name. Its SHA-256
    goes into the directory's ``weights.sha256`` (the old line is dropped just before the file is replaced, so a
    crash between the writes leaves a file without a record, which loads unchecked, never a record that
    contradicts it)."""
    seen: set[tuple] = set()
    tensors = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().contiguous().cpu()
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
        digest = checksums.sha256_file(tmp)
        record = checksums.read_record(path.parent)
        if record.pop(path.name, None) is not None:  # the old file's line goes just before the old file
            checksums.write_record(path.parent, record)
    checksums.write_record(path.parent, {**record, path.name: digest})
