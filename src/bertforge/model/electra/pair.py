"""The model ELECTRA pre-training trains: a small generator (masked LM) and the discriminator that spots its
replacements, sharing one set of embeddings (token, position, segment and their LayerNorm), as in the paper.

One module, so the training runtime (optimizer, DDP, checkpoints) sees one model and one forward pass. Saved, it is
two `transformers` directories: the discriminator (``ElectraForPreTraining``, the model to fine-tune) at the path,
the generator (``ElectraForMaskedLM``) in its ``generator/`` subdirectory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import ConfigError, require_dir
from bertforge.model.electra.config import generator_config
from bertforge.model.electra.outputs import ElectraPairOutput
from bertforge.model.electra.pretraining import ElectraForMaskedLM, ElectraForPreTraining
from bertforge.model.unpadded import host_values

GENERATOR_DIR = "generator"
SHARED = ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")


def share_embeddings(generator: nn.Module, discriminator: nn.Module, shared: tuple[str, ...] = SHARED,
                     tied_output: str | None = "generator_lm_head") -> None:
    """Make the generator use the discriminator's embedding modules named ``shared`` (the same tensors, one set of
    gradients); each keeps its own projection to its hidden size. ``tied_output`` names the generator's output
    Linear whose matrix is the word embedding (ELECTRA's), which must follow the shared one; None where the
    generator reads the word embeddings at each forward (RoFormer's)."""
    ours = getattr(generator, generator.base_model_prefix).embeddings
    theirs = getattr(discriminator, discriminator.base_model_prefix).embeddings
    for name in shared:
        setattr(ours, name, getattr(theirs, name))
    if tied_output is not None and generator.config.tie_word_embeddings:
        getattr(generator, tied_output).weight = theirs.word_embeddings.weight


def sample_tokens(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of (N, V) logits, drawn from their softmax by inverting its CDF at (N,) uniforms in
    [0, 1): the draw is a multinomial sample whose randomness the caller supplies (seeded per instance, so runs
    repeat and resume exactly), and it carries no gradient."""
    cdf = logits.detach().float().softmax(-1).cumsum(-1)  # (N, V)
    at = (uniforms.to(cdf.dtype) * cdf[:, -1])[:, None].contiguous()  # (N, 1), scaled: cdf[-1] ~ 1
    return torch.searchsorted(cdf, at, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)  # (N,)


class ElectraPair(nn.Module):
    """``generator`` (ElectraForMaskedLM, ``generator_size`` of the width) and ``discriminator``
    (ElectraForPreTraining) with shared embeddings. ``config`` is the discriminator's.

    Another family trains by ELECTRA's objective through a subclass that names its two classes, the embedding
    modules they share and the generator's tied output layer (``model/roformer/replaced_token.py``)."""

    discriminator_class: type[nn.Module] = ElectraForPreTraining
    generator_class: type[nn.Module] = ElectraForMaskedLM
    shared: tuple[str, ...] = SHARED
    tied_output: str | None = "generator_lm_head"

    def __init__(self, config, generator_size: float = 0.25, *, discriminator: nn.Module | None = None,
                 generator: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.discriminator = discriminator if discriminator is not None else self.discriminator_class(config)
        if generator is None:
            generator = self.generator_class(generator_config(config, generator_size))
        self.generator = generator
        g = self.generator.config
        for name in ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size"):
            if getattr(g, name) != getattr(config, name):
                raise ConfigError(f"the generator's {name} is {getattr(g, name)} and the discriminator's "
                                  f"{getattr(config, name)}: they cannot share embeddings")
        share_embeddings(self.generator, self.discriminator, self.shared, self.tied_output)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, uniforms: torch.Tensor) -> ElectraPairOutput:
        """input_ids (B, T): the masked input; labels (B, T): the originals at the masked positions, -100 elsewhere;
        uniforms (B, T): the random numbers of the generator's draws at the masked positions.

        The generator predicts the masked tokens; its samples replace them in the original text; the discriminator
        labels every real token replaced (1) or original (0), a sample equal to the original counting as original.
        """
        gen = self.generator(input_ids, token_type_ids, attention_mask, labels=labels)  # logits (N, V)
        # The masked positions in row-major order, the order of the generator's logits (from the labels' host copy).
        rows = torch.from_numpy(np.flatnonzero(host_values(labels, read=True) != IGNORE_INDEX))
        rows = rows.to(labels.device, non_blocking=True)
        original = torch.where(labels != IGNORE_INDEX, labels, input_ids)  # (B, T)
        with torch.no_grad():
            sampled = sample_tokens(gen.logits, uniforms.flatten().index_select(0, rows))  # (N,)
            corrupted = original.flatten().index_copy(0, rows, sampled).view_as(original)  # (B, T)
            replaced = (corrupted != original).long()  # (B, T); 0 at padding, where nothing is masked
        disc = self.discriminator(corrupted, token_type_ids, attention_mask, labels=replaced)
        return ElectraPairOutput(gen.loss, disc.loss, gen.logits, disc.logits, replaced, corrupted)

    def num_parameters(self) -> int:
        """Distinct parameters (the shared embeddings count once)."""
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """The discriminator at ``path``, the generator at ``path/generator`` (both with the shared embeddings)."""
        path = Path(path)
        self.discriminator.save_pretrained(path)
        self.generator.save_pretrained(path / GENERATOR_DIR)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, generator_size: float | None = None,
                        **config_overrides) -> "ElectraPair":
        """The pair ``save_pretrained`` wrote; ``config_overrides`` set fields of both configs. A discriminator
        directory without ``generator/`` (a transformers checkpoint) gets a fresh generator of ``generator_size``
        (default 1/4), with a warning; a saved generator of another width than ``generator_size`` asks for is
        an error (its weights would not fit)."""
        path = require_dir(path, what="model directory")
        discriminator = cls.discriminator_class.from_pretrained(path, **config_overrides)
        if not (path / GENERATOR_DIR / "config.json").is_file():
            size = 0.25 if generator_size is None else generator_size
            warnings.warn(f"{path}: no {GENERATOR_DIR}/ directory: the generator starts from random weights "
                          f"(generator_size {size})", stacklevel=2)
            return cls(discriminator.config, size, discriminator=discriminator)
        generator = cls.generator_class.from_pretrained(path / GENERATOR_DIR, **config_overrides)
        if generator_size is not None:
            wanted = generator_config(discriminator.config, generator_size).hidden_size
            if generator.config.hidden_size != wanted:
                raise ConfigError(f"setting 'generator_size' {generator_size} asks for a generator of hidden size "
                                  f"{wanted}, and {path / GENERATOR_DIR} holds one of {generator.config.hidden_size}",
                                  hint="use the generator_size the model was trained with")
        return cls(discriminator.config, discriminator=discriminator, generator=generator)
