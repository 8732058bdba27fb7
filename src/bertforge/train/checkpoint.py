"""Crash-safe training checkpoints: ``step-XXXXXXXX/`` directories that appear whole or not at all.

A checkpoint is written into a hidden temporary sibling (``.tmp-step-...``), every file is fsynced,
``checkpoint.json`` (step, time, file sizes, a completeness marker) goes in last, and one
``os.rename`` publishes it. Only then are old checkpoints pruned. ``latest_checkpoint`` trusts a
directory only if its manifest parses and every listed file has the listed size, so a crash at any
moment leaves the previous checkpoint as the one to resume from. One process writes a directory.
The manifest also records each file's SHA-256, checked when the checkpoint is loaded (damaged bytes are
one error naming the file; ``BERTFORGE_SKIP_CHECKSUM=1`` skips the check; older checkpoints have none).

Layout: ``model.safetensors`` (the model's state dict; tied tensors stored once), ``trainer_state.pt``
(everything else in ``state``: optimizer, scheduler, scaler, rng, data position, config, metrics...;
a pickle, so load only checkpoints you trust), ``checkpoint.json``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from bertforge.errors import CheckpointError
from bertforge.io.atomic import atomic_dir
from bertforge.io.checksums import check_digest, sha256_file

MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer_state.pt"
MANIFEST_FILE = "checkpoint.json"
FORMAT = "bertforge-checkpoint/1"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------- saving


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dedupe_shared(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Make a state dict safetensors-ready: same-view duplicates (tied weights) become aliases
    {dropped name: kept name}, the first name kept; other tensors that share storage with a kept
    one, and non-contiguous ones, are copied."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    owners: dict[tuple, list[str]] = {}  # (device, storage pointer) -> kept names on that storage
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"model state {name!r} is a {type(t).__name__}, not a tensor")
        t = t.detach()
        if t.nelement() == 0:  # empty tensors have no storage to share
            unique[name] = t
            continue
        key = (t.device, t.untyped_storage().data_ptr())
        kept = owners.get(key, [])
        twin = next((k for k in kept if _same_view(unique[k], t)), None)
        if twin is not None:
            aliases[name] = twin
            continue
        if kept or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
            key = (t.device, t.untyped_storage().data_ptr())
        unique[name] = t
        owners.setdefault(key, []).append(name)
    return unique, aliases


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if ``a`` and ``b`` are the same elements of the same memory."""
    return (a.data_ptr(), a.shape, a.stride(), a.dtype) == (b.data_ptr(), b.shape, b.stride(), b.dtype)


def _write_checkpoint(tmp: Path, step: int, state: dict[str, Any]) -> None:
    """Write every file of a checkpoint into ``tmp``, the manifest last."""
    files = []
    model = state.get("model")
    if model is not None:
        tensors, aliases = _dedupe_shared(model.state_dict() if isinstance(model, nn.Module) else model)
        safetensors.torch.save_file(tensors, tmp / MODEL_FILE, metadata={"aliases": json.dumps(aliases)})
        files.append(MODEL_FILE)
    torch.save({k: v for k, v in state.items() if k != "model"}, tmp / TRAINER_FILE)
    files.append(TRAINER_FILE)
    for f in files:
        _fsync(tmp / f)
    manifest = {
        "format": FORMAT,
        "step": step,
        "time": time.time(),
        "files": {f: (tmp / f).stat().st_size for f in files},
        "sha256": {f: sha256_file(tmp / f) for f in files},
        "complete": True,
    }
    with open(tmp / MANIFEST_FILE, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)


def save_checkpoint(
    directory: Path, step: int, state: dict[str, Any], keep_last: int | None = 3
) -> Path:
    """Atomically write ``state`` to ``directory/step-{step:08d}/`` and keep the newest ``keep_last``.

    ``state["model"]`` (a state dict or module) goes to safetensors; all else to ``trainer_state.pt``.
    An existing checkpoint of the same step is replaced. ``keep_last=None`` keeps every checkpoint.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    tmp = directory / f"{_TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    old = None
    try:
        tmp.mkdir()
        _write_checkpoint(tmp, step, state)
        if final.exists():  # the same step saved again (e.g. after a resume): move the old one aside
            old = directory / f"{_TMP_PREFIX}old-{final.name}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        os.rename(tmp, final)
        _fsync(directory)
    except BaseException:
        if old is not None and not final.exists():
            old.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(directory, keep=final, keep_last=keep_last)
    return final


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-*`` directory, newest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found, reverse=True)


def _prune(directory: Path, keep: Path, keep_last: int | None) -> None:
    """Delete checkpoints beyond the newest ``keep_last`` (never ``keep``) and stale temporaries."""
    for p in directory.iterdir():
        if p.name.startswith(_TMP_PREFIX) and p.is_dir():  # left by a crash or a replaced checkpoint
            shutil.rmtree(p, ignore_errors=True)
    if keep_last is None:
        return
    for _, p in _step_dirs(directory)[keep_last:]:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- loading


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a complete checkpoint; ValueError saying why if ``path`` is not one."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
        if manifest.get("complete") is not True or not isinstance(manifest.get("step"), int):
            raise ValueError("not marked complete")
        for name, size in manifest["files"].items():
            actual = (path / name).stat().st_size
            if actual != size:
                raise ValueError(f"{name} has {actual} bytes, the manifest says {size}")
        return manifest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a complete checkpoint: {type(e).__name__}: {e}") from e


def latest_checkpoint(directory: Path) -> Path | None:
    """Newest complete checkpoint in ``directory``, or None; temporaries are skipped, broken
    checkpoints skipped with a warning."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for _, path in _step_dirs(directory):
        try:
            _read_manifest(path)
            return path
        except ValueError as e:
            warnings.warn(f"ignoring {e}", stacklevel=2)
    return None


def _verify(path: Path, manifest: dict[str, Any], name: str) -> Path:
    """``path / name``, checked against the SHA-256 the manifest records for it (if any)."""
    expected = (manifest.get("sha256") or {}).get(name)
    if expected is not None:
        check_digest(path / name, expected, str(path / MANIFEST_FILE))
    return path / name


def _load_trainer_state(path: Path, manifest: dict[str, Any], map_location) -> dict[str, Any]:
    file = _verify(path, manifest, TRAINER_FILE)
    try:
        return torch.load(file, map_location=map_location, weights_only=False)
    except Exception as e:  # a damaged pickle raises many types
        raise CheckpointError(f"{file}: cannot read the trainer state: {type(e).__name__}: {e}",
                              hint="resume from an older checkpoint (remove this one) or start a new run") from None


def checkpoint_step(path: Path) -> int:
    """The step a complete checkpoint was saved at (from its manifest)."""
    return _read_manifest(Path(path))["step"]


def read_run_config(path: Path) -> dict[str, Any]:
    """The ``run_config`` a complete checkpoint was saved with (to compare settings before any work)."""
    path = Path(path)
    return _load_trainer_state(path, _read_manifest(path), "cpu").get("run_config", {})


def check_resumable(path: Path, saved: dict[str, Any], current: dict[str, Any],
                    ignore: set[str] = frozenset()) -> None:
    """Refuse to resume from the checkpoint at ``path`` if the run's settings (``run_config``) changed since it was
    saved: one CheckpointError naming each changed setting by its flag (or model config field), old and new value."""
    changed = [f"{_flag(key)} was {saved.get(key)!r} and is {current.get(key)!r} now"
               for key in sorted(set(saved) | set(current)) if key not in ignore and saved.get(key) != current.get(key)]
    if changed:
        raise CheckpointError(f"cannot resume from {path}: {'; '.join(changed)}",
                              hint="use the original values, or another --out for a new run")


def _flag(key: str) -> str:
    """A run-config key in the user's terms: the flag for a setting, the config field for the model."""
    return key if key.startswith("model.") or key == "world_size" else "--" + key.replace("_", "-")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved ``state`` plus ``step``: ``model`` as a dict of tensors (tied names restored), the
    rest as saved. Raises ValueError if ``path`` is not a complete checkpoint, CheckpointError if a file's
    bytes differ from the SHA-256 its manifest records."""
    path = Path(path)
    manifest = _read_manifest(path)
    state: dict[str, Any] = {"step": manifest["step"]}
    if MODEL_FILE in manifest["files"]:
        device = str(torch.device(map_location))
        try:
            with safetensors.safe_open(_verify(path, manifest, MODEL_FILE), framework="pt", device=device) as f:
                model = {name: f.get_tensor(name) for name in f.keys()}
                aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises several types for a damaged file
            raise CheckpointError(f"{path / MODEL_FILE}: cannot read safetensors file: {e}") from None
        model.update({name: model[kept] for name, kept in aliases.items()})
        state["model"] = model
    state.update(_load_trainer_state(path, manifest, map_location))
    return state


# ----------------------------------------------------------------------------- random state

RandomGenerator = torch.Generator | np.random.Generator


def _plain(x: Any) -> Any:
    """Numpy arrays inside an RNG state -> lists, so the state is plain Python data."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def capture_rng_state(generators: dict[str, RandomGenerator] | None = None) -> dict[str, Any]:
    """State of python ``random``, numpy's global RNG, torch CPU and every CUDA device, and of the
    named ``generators`` (torch or numpy Generators, e.g. the data sampler's)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {},
    }
    for name, gen in (generators or {}).items():
        if isinstance(gen, torch.Generator):
            state["generators"][name] = gen.get_state()
        elif isinstance(gen, np.random.Generator):
            state["generators"][name] = _plain(gen.bit_generator.state)
        else:
            raise TypeError(f"generator {name!r} is a {type(gen).__name__}, "
                            "expected torch.Generator or numpy.random.Generator")
    return state


def restore_rng_state(
    state: dict[str, Any], generators: dict[str, RandomGenerator] | None = None
) -> None:
    """Undo ``capture_rng_state``: restore the global RNGs and, in place, the named ``generators``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        n = torch.cuda.device_count()
        if n != len(state["cuda"]):
            warnings.warn(f"checkpoint has RNG states for {len(state['cuda'])} CUDA devices, "
                          f"this machine has {n}; restoring the first {min(n, len(state['cuda']))}")
        for i, s in enumerate(state["cuda"][:n]):
            torch.cuda.set_rng_state(s, i)
    for name, gen in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(f"no RNG state saved for generator {name!r}; "
                           f"saved: {sorted(state['generators'])}")
        if isinstance(gen, torch.Generator):
            gen.set_state(state["generators"][name])
        else:
            gen.bit_generator.state = state["generators"][name]


def save_model_dir(model: Any, tokenizer: Any, directory: Path) -> Path:
    """Write ``model`` and ``tokenizer`` (transformers layout) to ``directory`` as a whole: a reader never
    sees a half-written model."""
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(directory)
