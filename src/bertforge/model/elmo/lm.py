"""ElmoLanguageModel: the biLM under one softmax over words, trained as ELMo was (next word, previous word).

Each sentence is ``<S> w1 .. wn </S>``: the forward top layer at position t predicts the word at t + 1,
the backward top layer at t predicts the word at t - 1; both directions share the softmax, and the loss
is the mean of the two directions' mean cross-entropies, as bilm-tf's ``total_loss``.

The softmax is the **full** softmax over a frequency-capped vocabulary (``WordVocab.build(max_words=...)``),
not bilm-tf's sampled softmax. bilm-tf sampled 8,192 negatives because its vocabulary had 793k words; with
a cap of tens of thousands the exact softmax is affordable, gives exact gradients, and its training loss is
the perplexity one evaluates (a sampled loss is not). To keep memory sane it is computed only at real
positions, in chunks of tokens whose logits' gradients are taken at once (``softmax_loss``), so at most
``chunk x vocab`` logits are alive at once.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import ConfigError, UsageError
from bertforge.io.weights import save_state_dict
from bertforge.model.elmo.bilm import ElmoBiLM, load_exactly, read_pretrained
from bertforge.model.elmo.chars import BOS_TOKEN, EOS_TOKEN, batch_to_char_ids
from bertforge.model.elmo.config import ElmoConfig
from bertforge.model.dropout import dropout
from bertforge.model.elmo.softmax_loss import linear_cross_entropy
from bertforge.model.elmo.vocab import WordVocab

LOGITS_PER_CHUNK = 1 << 22  # floats of logits alive at once (16 MiB in fp32)


@dataclass
class ElmoLMOutput:
    loss: torch.Tensor  # (forward_loss + backward_loss) / 2
    forward_loss: torch.Tensor  # mean next-word cross-entropy
    backward_loss: torch.Tensor  # mean previous-word cross-entropy
    forward_sum: torch.Tensor  # summed cross-entropy and number of predicted words, to weight
    forward_count: torch.Tensor  # across micro-batches and ranks
    backward_sum: torch.Tensor
    backward_count: torch.Tensor


class ElmoLanguageModel(nn.Module):
    """ElmoBiLM + a softmax over ``config.vocab_size`` words, shared by both directions."""

    def __init__(self, config: ElmoConfig, vocab: WordVocab | None = None):
        super().__init__()
        if vocab is not None and config.vocab_size == 0:
            config = dataclasses.replace(config, vocab_size=len(vocab))
        if config.vocab_size <= 0:
            raise ConfigError("a language model needs vocab_size > 0 (or a vocab)")
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ConfigError(f"vocab has {len(vocab)} words but config.vocab_size is {config.vocab_size}")
        self.config, self.vocab = config, vocab
        self.bilm = ElmoBiLM(config)
        self.softmax = nn.Linear(config.projection_dim, config.vocab_size)
        with torch.no_grad():  # bilm-tf: normal(0, 1/sqrt(dim)), zero bias
            nn.init.normal_(self.softmax.weight, 0.0, config.projection_dim ** -0.5)
            self.softmax.bias.zero_()

    def batch(self, sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """char_ids (B, T, C), word_ids (B, T), mask (B, T) of ``<S> words </S>`` for each sentence."""
        if self.vocab is None:
            raise UsageError("this language model has no vocabulary; pass one to the constructor")
        wrapped = [[BOS_TOKEN, *s, EOS_TOKEN] for s in sentences]
        char_ids = batch_to_char_ids(wrapped, self.config.max_characters_per_token)
        word_ids = torch.zeros(char_ids.shape[:2], dtype=torch.long)
        for b, s in enumerate(wrapped):
            word_ids[b, : len(s)] = torch.tensor(self.vocab.encode(s))
        return char_ids, word_ids, (char_ids > 0).any(-1)

    def forward(self, char_ids: torch.Tensor, word_ids: torch.Tensor, mask: torch.Tensor | None = None
                ) -> ElmoLMOutput:
        mask = (char_ids > 0).any(-1) if mask is None else mask.bool()  # (B, T)
        top = self.bilm(char_ids, mask)[:, -1]  # (B, T, 2P)
        top = dropout(top, self.config.dropout, self.training)
        P = self.config.projection_dim
        keep = mask & (word_ids != IGNORE_INDEX)
        # forward: position t predicts t + 1; backward: position t + 1 predicts t
        f_sum, f_n = self._nll(top[:, :-1, :P], word_ids[:, 1:], mask[:, :-1] & keep[:, 1:])
        b_sum, b_n = self._nll(top[:, 1:, P:], word_ids[:, :-1], mask[:, 1:] & keep[:, :-1])
        f_loss, b_loss = f_sum / f_n.clamp(min=1), b_sum / b_n.clamp(min=1)
        return ElmoLMOutput((f_loss + b_loss) / 2, f_loss, b_loss, f_sum, f_n, b_sum, b_n)

    def _nll(self, hidden: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the valid positions of hidden (B, T, P), and their count."""
        hidden, targets = hidden[valid], targets[valid]  # (N, P), (N,)
        if targets.numel() and (targets.min() < 0 or targets.max() >= self.config.vocab_size):
            raise UsageError(f"word ids must be in [0, {self.config.vocab_size}), got "
                             f"{targets.min().item()}..{targets.max().item()}")
        chunk = max(1, LOGITS_PER_CHUNK // self.config.vocab_size)
        return linear_cross_entropy(hidden, self.softmax.weight, self.softmax.bias, targets, chunk), valid.sum()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """``config.json``, ``model.safetensors`` and, if the model has one, ``vocab.txt``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / "config.json")
        save_state_dict(self.state_dict(), directory / "model.safetensors")
        if self.vocab is not None:
            self.vocab.save(directory / "vocab.txt")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ElmoLanguageModel":
        directory = Path(directory)
        config, state = read_pretrained(directory)
        vocab = WordVocab.load(directory / "vocab.txt") if (directory / "vocab.txt").is_file() else None
        model = cls(config, vocab)
        load_exactly(model, state, directory)
        return model.eval()
