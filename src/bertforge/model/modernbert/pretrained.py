"""What every ModernBERT model shares: its initialisation, and load/save in the `transformers` layout.

Head models hold the encoder as ``self.model``, so their weights are ``model.layers.0...``; a bare
ModernBertModel's have no prefix. Loading adds or strips the prefix as needed, so an encoder-only checkpoint
loads under a head and a head checkpoint under the encoder.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.io.weights import load_prefixed
from bertforge.model.modernbert.config import ModernBertConfig
from bertforge.model.pretrained import PreTrainedModel


class ModernBertPreTrainedModel(PreTrainedModel):
    """Base of ModernBertModel and every ModernBERT head model."""

    config_class = ModernBertConfig
    base_model_prefix = "model"
    load_weights = staticmethod(load_prefixed)

    @torch.no_grad()
    def init_weights(self) -> None:
        """transformers' initialisation: truncated normals (cut at +-initializer_cutoff_factor std) with std
        initializer_range for the embedding and the input projections (Wqkv, Wi), initializer_range /
        sqrt(2 * layers) for the output projections (Wo, the head's dense, the decoder), hidden_size ** -0.5 for
        a classifier; zero biases, LayerNorm 1/0."""
        from bertforge.model.modernbert.attention import ModernBertAttention  # (they import this module)
        from bertforge.model.modernbert.heads import ModernBertPredictionHead
        from bertforge.model.modernbert.model import ModernBertEmbeddings, ModernBertMLP

        cfg = self.config
        stds = {"in": cfg.initializer_range, "out": cfg.initializer_range / math.sqrt(2.0 * cfg.num_hidden_layers),
                "final_out": cfg.hidden_size ** -0.5}
        cutoff = cfg.initializer_cutoff_factor

        def init(module: nn.Module, std: float) -> None:
            nn.init.trunc_normal_(module.weight, 0.0, std, -cutoff * std, cutoff * std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()

        decoder = getattr(self, "decoder", None)
        if decoder is not None:  # first: a decoder tied to the embedding ends with the embedding's init
            init(decoder, stds["out"])
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, ModernBertEmbeddings):
                init(module.tok_embeddings, stds["in"])
            elif isinstance(module, (ModernBertMLP, ModernBertAttention)):
                init(module.Wi if isinstance(module, ModernBertMLP) else module.Wqkv, stds["in"])
                init(module.Wo, stds["out"])
            elif isinstance(module, ModernBertPredictionHead):
                init(module.dense, stds["out"])
        classifier = getattr(self, "classifier", None)
        if classifier is not None:
            init(classifier, stds["final_out"])
