"""Load the hdf5 weight file bilm-tf writes (``dump_weights``) into an ElmoBiLM.

The name map is short: ``char_embed`` (no padding row: ours is row 0, kept zero), ``CNN/W_cnn_i``
(1, width, dim, n), ``CNN_high_i/{W,b}_{carry,transform}``, ``CNN_proj/{W,b}_proj`` and, per direction
d (0 forward, 1 backward) and layer l, ``RNN_d/RNN/MultiRNNCell/Cell{l}/LSTMCell/{W_0,B,W_P_0}``. TF
keeps ``W_0`` as one (input + state, 4 cell) kernel with gates (input, cell, forget, output) and adds
a forget bias of 1.0 at run time; we split the kernel, reorder the gates and fold the 1.0 into the bias.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from bertforge.errors import DataFormatError, require_file
from bertforge.model.elmo.bilm import ElmoBiLM

FORGET_BIAS = 1.0  # TF's LSTMCell default, added to the forget gate pre-activation


def _tf_to_torch_gates(x: np.ndarray) -> np.ndarray:
    """Reorder the gate blocks along axis 0 from TF's (i, j, f, o) to PyTorch's (i, f, j, o)."""
    i, j, f, o = np.split(x, 4, axis=0)
    return np.concatenate([i, f, j, o], axis=0)


def load_bilm_tf_weights(model: ElmoBiLM, path: str | os.PathLike) -> None:
    """Copy every tensor of the bilm-tf hdf5 file at ``path`` onto ``model``'s parameters."""
    import h5py  # only this loader needs it

    path = require_file(path, what="bilm-tf weight file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(f"not an hdf5 file: {e}", path=path) from None
    with f:
        def read(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise DataFormatError(f"no dataset {name!r}", path=path)
            if tuple(f[name].shape) != shape:
                raise DataFormatError(f"dataset {name!r} has shape {tuple(f[name].shape)}, the options "
                                      f"need {shape}", path=path)
            return np.asarray(f[name][...], dtype=np.float32)

        state = _map_weights(model, read)
    own = model.state_dict()
    model.load_state_dict({**own, **{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}})


def _map_weights(model: ElmoBiLM, read) -> dict[str, np.ndarray]:
    """Our parameter names -> arrays from the file, in our layouts."""
    cfg = model.config
    out: dict[str, np.ndarray] = {}
    chars = read("char_embed", (cfg.n_characters - 1, cfg.char_embedding_dim))
    out["char_cnn.char_embedding.weight"] = np.concatenate([np.zeros_like(chars[:1]), chars])
    for i, (width, n) in enumerate(cfg.filters):
        w = read(f"CNN/W_cnn_{i}", (1, width, cfg.char_embedding_dim, n))
        out[f"char_cnn.convs.{i}.weight"] = w[0].transpose(2, 1, 0)  # (n, dim, width)
        out[f"char_cnn.convs.{i}.bias"] = read(f"CNN/b_cnn_{i}", (n,))
    D = cfg.n_filters
    for i in range(cfg.n_highway):
        for ours, theirs in (("carry", "carry"), ("transform", "transform")):
            out[f"char_cnn.highways.{i}.{ours}.weight"] = read(f"CNN_high_{i}/W_{theirs}", (D, D)).T
            out[f"char_cnn.highways.{i}.{ours}.bias"] = read(f"CNN_high_{i}/b_{theirs}", (D,))
    if D != cfg.projection_dim:
        out["char_cnn.projection.weight"] = read("CNN_proj/W_proj", (D, cfg.projection_dim)).T
        out["char_cnn.projection.bias"] = read("CNN_proj/b_proj", (cfg.projection_dim,))
    P, C = cfg.projection_dim, cfg.lstm_dim
    for d, direction in enumerate(("forward", "backward")):
        for l, layer in enumerate(getattr(model.lstm, f"{direction}_layers")):
            root, ours = f"RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell", f"lstm.{direction}_layers.{l}"
            kernel = _tf_to_torch_gates(read(f"{root}/W_0", (P + P, 4 * C)).T)  # (4C, in + P)
            out[f"{ours}.input_linear.weight"] = kernel[:, :P]
            out[f"{ours}.state_linear.weight"] = kernel[:, P:]
            bias = read(f"{root}/B", (4 * C,)).copy()
            bias[2 * C: 3 * C] += FORGET_BIAS  # TF's forget block, before the reorder
            out[f"{ours}.state_linear.bias"] = _tf_to_torch_gates(bias)
            if layer.projection is not None:
                out[f"{ours}.projection.weight"] = read(f"{root}/W_P_0", (C, P)).T
    return out
