"""ELMo on a WordPiece vocabulary: the same biLM, reading the shared tokenizer's pieces as its tokens.

bertforge compares ELMo with BERT on one tokenizer and one data pipeline, so its ELMo's tokens are
WordPiece pieces (``straw``, ``##berries``): the character CNN reads each piece's characters (``##``
included, so a continuation looks different from a word start), ``[CLS]`` and ``[SEP]`` are bilm-tf's
``<S>`` and ``</S>``, ``[PAD]`` is no token, and the language model's softmax is over the vocabulary
itself (a full softmax: 8k-30k pieces, where bilm-tf sampled from 793k words). The pieces' character
ids are a table built from ``vocab.txt`` when the model is made or loaded, so a model takes
``input_ids`` (B, T) like every other bertforge model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from bertforge.errors import ConfigError
from bertforge.model.elmo.bilm import ElmoBiLM, load_exactly, read_pretrained
from bertforge.model.elmo.chars import BOS_TOKEN, EOS_TOKEN, word_to_char_ids
from bertforge.model.elmo.config import ElmoConfig
from bertforge.model.elmo.lm import ElmoLanguageModel, ElmoLMOutput
from bertforge.model.scalar_mix import ScalarMix
from bertforge.tokenization import load_vocab

MARKERS = {"[CLS]": BOS_TOKEN, "[SEP]": EOS_TOKEN}


def piece_char_table(pieces: list[str], max_chars: int, pad: str = "[PAD]") -> torch.Tensor:
    """(V, max_chars) character ids of every vocabulary entry; the padding entry is all zeros."""
    table = torch.zeros(len(pieces), max_chars, dtype=torch.long)
    for i, piece in enumerate(pieces):
        if piece != pad:
            table[i] = torch.tensor(word_to_char_ids(MARKERS.get(piece, piece), max_chars))
    return table


def vocabulary(directory: Path) -> list[str]:
    """The pieces of a model directory's vocab.txt, by id."""
    vocab = load_vocab(directory / "vocab.txt")
    return sorted(vocab, key=vocab.__getitem__)


class ElmoPieceLM(ElmoLanguageModel):
    """The biLM language model over WordPiece ids: forward predicts piece t + 1, backward piece t - 1."""

    def __init__(self, config: ElmoConfig, pieces: list[str]):
        if config.vocab_size not in (0, len(pieces)):
            raise ConfigError(f"vocab_size is {config.vocab_size} but the vocabulary has {len(pieces)} pieces")
        super().__init__(dataclasses.replace(config, vocab_size=len(pieces)))
        self.register_buffer("char_table", piece_char_table(pieces, config.max_characters_per_token),
                             persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> ElmoLMOutput:
        mask = input_ids != 0 if attention_mask is None else attention_mask.bool()
        return super().forward(self.char_table[input_ids], input_ids, mask)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ElmoPieceLM":
        directory = Path(directory)
        config, state = read_pretrained(directory)
        model = cls(config, vocabulary(directory))
        load_exactly(model, state, directory)
        return model


class ElmoPieceFeatures(nn.Module):
    """A frozen biLM over WordPiece ids under a learned scalar mix of its 2L + 1 layers: (B, T) -> (B, T, 2P).

    The biLM runs without gradients and in eval mode even while the task model trains (ELMo's recipe).
    """

    def __init__(self, bilm: ElmoBiLM, pieces: list[str]):
        super().__init__()
        self.bilm = bilm.requires_grad_(False).eval()
        self.mix = ScalarMix(bilm.num_layers)
        self.register_buffer("char_table", piece_char_table(pieces, bilm.config.max_characters_per_token),
                             persistent=False)

    def train(self, mode: bool = True) -> "ElmoPieceFeatures":
        super().train(mode)
        self.bilm.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mix(self.layers(input_ids, attention_mask).unbind(1))

    def layers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen biLM's L + 1 layers, (B, L + 1, T, 2P): what the scalar mix reads."""
        mask = input_ids != 0 if attention_mask is None else attention_mask.bool()
        with torch.no_grad():
            return self.bilm(self.char_table[input_ids], mask)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ElmoPieceFeatures":
        """The biLM of a pre-trained ELMo directory (its softmax, if any, is left out)."""
        directory = Path(directory)
        return cls(ElmoBiLM.from_pretrained(directory), vocabulary(directory))
