"""What every XLNet model shares: its initialisation, and load/save in the `transformers` layout.

Head models hold the encoder as ``self.transformer``, so their weights are ``transformer.layer.0...``;
a bare XLNetModel's have no prefix. Loading adds or strips the prefix as needed, so an encoder-only
checkpoint loads under a head and a head checkpoint under the encoder.
"""

from __future__ import annotations

import torch

from bertforge.io.weights import load_prefixed
from bertforge.model.pretrained import PreTrainedModel, init_modules
from bertforge.model.xlnet.attention import RelativeAttention
from bertforge.model.xlnet.config import XLNetConfig


class XLNetPreTrainedModel(PreTrainedModel):
    """Base of XLNetModel and every XLNet head model."""

    config_class = XLNetConfig
    base_model_prefix = "transformer"
    load_weights = staticmethod(load_prefixed)

    @torch.no_grad()
    def init_weights(self) -> None:
        """transformers' initialisation: normal(0, initializer_range) for every matrix, vector and
        embedding (relative-attention biases and mask_emb included), zero Linear biases, LayerNorm 1/0."""
        std = self.config.initializer_range
        init_modules(self, std, zero_padding=False)
        for module in self.modules():
            if isinstance(module, RelativeAttention):
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, std)
        for name, p in self.named_parameters(remove_duplicate=False):
            if name.endswith("mask_emb"):
                p.normal_(0.0, std)
