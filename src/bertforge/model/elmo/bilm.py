"""ElmoBiLM: the char-CNN token embedder under forward and backward LSTMs, giving ELMo's 2L+1 layers.

``forward`` is stateless (zero initial states) for training and features. ``embed`` is bilm-tf's
inference procedure: it wraps each sentence in ``<S>``/``</S>``, starts each batch row's LSTMs from
the state that row ended with on the previous call (as bilm-tf's and AllenNLP's stateful biLMs do),
and strips the markers from the output.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bertforge.errors import CheckpointError, PathError, UsageError
from bertforge.io.weights import read_state_dict, save_state_dict
from bertforge.model.elmo.char_cnn import CharCNN
from bertforge.model.elmo.chars import BOS_TOKEN, EOS_TOKEN, batch_to_char_ids, remove_sentence_boundaries
from bertforge.model.elmo.config import ElmoConfig
from bertforge.model.elmo.lstm import ElmoLstm, State


class ElmoBiLM(nn.Module):
    """(B, T, C) character ids -> (B, 2L + 1, T, 2P) activations; layer 0 is the token embedding, twice."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.config = config
        self.char_cnn = CharCNN(config)
        self.lstm = ElmoLstm(config)
        self.char_cnn.reset_parameters()
        self._states: State | None = None  # carried by `embed`, (2, L, B_max, dim) each

    @property
    def num_layers(self) -> int:
        return self.config.n_layers + 1

    @property
    def output_dim(self) -> int:
        return 2 * self.config.projection_dim

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        layers, _ = self._run(char_ids, mask)
        return layers

    def _run(self, char_ids: torch.Tensor, mask: torch.Tensor | None, state: State | None = None
             ) -> tuple[torch.Tensor, State]:
        C = self.config.max_characters_per_token
        if char_ids.dim() != 3 or char_ids.shape[-1] != C:
            raise UsageError(f"char_ids must be (batch, tokens, {C}), got {tuple(char_ids.shape)}",
                             hint=f"batch_to_char_ids(sentences, max_chars={C})")
        mask = (char_ids > 0).any(-1) if mask is None else mask.bool()  # (B, T)
        tokens = self.char_cnn(char_ids)  # (B, T, P)
        lstm_layers, final = self.lstm(tokens, mask, state)
        layers = torch.stack([torch.cat([tokens, tokens], dim=-1), *lstm_layers], dim=1)  # (B, 2L+1, T, 2P)
        return layers * mask[:, None, :, None], final

    # --- bilm-tf's stateful inference ------------------------------------------------------------

    @torch.no_grad()
    def embed(self, sentences: list[list[str]]) -> torch.Tensor:
        """(B, 2L + 1, T, 2P) activations of the words (T = longest sentence), zero past each sentence.

        Row b continues from the LSTM states that row b ended with on the previous call; rows past this
        batch keep theirs, as in bilm-tf. Call ``reset_states`` to start afresh.
        """
        device = next(self.parameters()).device
        char_ids = batch_to_char_ids([[BOS_TOKEN, *s, EOS_TOKEN] for s in sentences],
                                     self.config.max_characters_per_token).to(device)
        mask = (char_ids > 0).any(-1)  # (B, T + 2)
        B = char_ids.shape[0]
        layers, (h, c) = self._run(char_ids, mask, self._initial_state(B))
        self._keep_state(h, c)
        return remove_sentence_boundaries(layers, mask)[0]

    def reset_states(self) -> None:
        """Forget the LSTM states ``embed`` carries; the next call starts from zeros."""
        self._states = None

    def _initial_state(self, batch_size: int) -> State:
        zeros = self.lstm.zero_state(batch_size)
        if self._states is None:
            return zeros
        n = min(batch_size, self._states[0].shape[2])
        for z, s in zip(zeros, self._states):
            z[:, :, :n] = s[:, :, :n]
        return zeros

    def _keep_state(self, h: torch.Tensor, c: torch.Tensor) -> None:
        B = h.shape[2]
        if self._states is None or self._states[0].shape[2] <= B:
            self._states = (h.detach(), c.detach())
        else:  # a smaller batch: the rows it did not use keep their state
            self._states = tuple(torch.cat([new.detach(), old[:, :, B:]], dim=2)
                                 for new, old in zip((h, c), self._states))

    # --- weights -------------------------------------------------------------------------------------

    @classmethod
    def from_bilm_tf(cls, options_json: str | os.PathLike, weights_hdf5: str | os.PathLike) -> "ElmoBiLM":
        """A biLM trained by bilm-tf: its options.json and the hdf5 file of its weights, in eval mode."""
        from bertforge.model.elmo.bilm_tf import load_bilm_tf_weights

        model = cls(ElmoConfig.from_options_json(options_json))
        load_bilm_tf_weights(model, weights_hdf5)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """``config.json`` and ``model.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / "config.json")
        save_state_dict(self.state_dict(), directory / "model.safetensors")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ElmoBiLM":
        """A biLM saved by ``save_pretrained``; also takes an ``ElmoLanguageModel`` directory (the softmax is left out)."""
        directory = Path(directory)
        config, state = read_pretrained(directory)
        state = {k.removeprefix("bilm."): v for k, v in state.items() if not k.startswith("softmax.")}
        model = cls(config)
        load_exactly(model, state, directory)
        return model.eval()


def read_pretrained(directory: Path) -> tuple[ElmoConfig, dict[str, torch.Tensor]]:
    """The config and tensors of a saved ELMo directory."""
    if not directory.is_dir():
        raise PathError("no such model directory", path=directory)
    config = ElmoConfig.load(directory / "config.json")
    try:
        return config, read_state_dict(directory)
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(str(e)) from None


def load_exactly(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``model``; any missing, extra or wrongly shaped tensor is a CheckpointError."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{source}: the checkpoint does not fit {type(model).__name__}: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}")
    mismatched = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if v.shape != own[k].shape}
    if mismatched:
        name, (theirs, ours) = next(iter(mismatched.items()))
        raise CheckpointError(f"{source}: tensor {name!r} has shape {theirs} in the checkpoint but {ours} in "
                              f"the model", mismatched=mismatched)
    model.load_state_dict(state)

