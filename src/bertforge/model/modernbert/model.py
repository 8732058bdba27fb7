"""ModernBertModel (Warner et al., 2024): token embedding + norm, pre-norm blocks of rotary attention (global every
``global_attn_every_n_layers``, sliding-window local elsewhere) and a GeGLU MLP, a final norm; biases only where
the config's ``*_bias`` flags ask for them.

Weight names are transformers' (``embeddings.tok_embeddings``, ``layers.0.attn.Wqkv``, ``layers.0.mlp.Wi``,
``final_norm``...), so checkpoints travel both ways. Padded batches run on their real tokens only
(``model/unpadded.py``) when enough of the batch is padding, with the same results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.bert import check_inputs, unpads
from bertforge.model.dropout import Dropout
from bertforge.model.modernbert.attention import ModernBertAttention, rotary, window_mask
from bertforge.model.modernbert.config import GLOBAL, ModernBertConfig
from bertforge.model.modernbert.pretrained import ModernBertPreTrainedModel
from bertforge.model.unpadded import Unpadded, host_values, pad_output, prefix_lengths, unpad_input, unpadding

ACTIVATIONS = {
    "gelu": F.gelu,  # exact (erf), transformers' "gelu"
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


@dataclass
class ModernBertModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, H), after the final norm; zero at padding
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L + 1 of (B, T, H): embeddings, layers (last: the above)
    attentions: tuple[torch.Tensor, ...] | None = None  # L of (B, A, T, T)


class ModernBertEmbeddings(nn.Module):
    """Token embedding -> LayerNorm -> dropout; no positions (rotary, in attention) and no token types."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.drop = Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.tok_embeddings(input_ids)))  # (..., H)


class ModernBertMLP(nn.Module):
    """GeGLU: Wi makes an input and a gate half; act(input) * gate -> dropout -> Wo."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = ACTIVATIONS[config.hidden_activation]
        self.drop = Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs, gate = self.Wi(x).chunk(2, dim=-1)  # (..., I) each
        return self.Wo(self.drop(self.act(inputs) * gate))


class ModernBertEncoderLayer(nn.Module):
    """x + attn(attn_norm(x)), then + mlp(mlp_norm(x)). Layer 0 has no attn_norm: the embedding norm precedes it."""

    def __init__(self, config: ModernBertConfig, index: int):
        super().__init__()
        self.is_global = config.attention_types[index] == GLOBAL
        self.attn_norm = (nn.Identity() if index == 0 else
                          nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias))
        self.attn = ModernBertAttention(config, self.is_global)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = ModernBertMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | Unpadded | None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attn(self.attn_norm(x), cos, sin, mask, output_attentions)
        x = x + context
        return x + self.mlp(self.mlp_norm(x)), probs


class ModernBertModel(ModernBertPreTrainedModel):
    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertEncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.unpad_threshold: float | None = None  # the device's default (bert.UNPAD_THRESHOLD); 0: always, > 1: never
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, *, token_type_ids: torch.Tensor | None = None
                ) -> ModernBertModelOutput:
        """input_ids, attention_mask: (B, T); attention_mask 1 = token, 0 = padding. position_ids: (B or 1, T),
        default 0..T-1. token_type_ids: accepted and ignored (ModernBERT has no segment embedding), so the
        batches BERT's tasks make fit as they are.

        last_hidden_state is zero at the padding, as transformers' unpadded (flash-attention) path returns it.
        Right-padded batches with at least ``unpad_threshold`` padding run on their real tokens only; hidden
        states, attentions or position_ids take the padded path.
        """
        read = not (self.training and torch.is_grad_enabled())  # outside a training step a sync costs little
        check_inputs(self.config, input_ids, None, attention_mask, read=read)
        B, T = input_ids.shape
        layout = None
        if not (output_hidden_states or output_attentions or position_ids is not None):
            layout = self._layout(attention_mask, T, input_ids.device, read)
        if layout is not None:
            positions = layout.indices % layout.width  # (N,) each token's position in its sequence
            x = self.embeddings(unpad_input(input_ids, layout.indices))  # (N, H)
            masks: dict[bool, torch.Tensor | Unpadded | None] = {True: layout, False: layout}
        else:
            positions = torch.arange(T, device=input_ids.device)[None] if position_ids is None else position_ids
            x = self.embeddings(input_ids)  # (B, T, H)
            masks = self._masks(attention_mask, T, input_ids.device)
        rope = {}
        for is_global, base in ((True, self.config.global_rope_theta), (False, self.config.local_rope_theta)):
            rope[is_global] = rotary(positions, self.config.head_dim, base, x.dtype)  # (B|1, T, D) or (N, D)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            x, probs = layer(x, *rope[layer.is_global], masks[layer.is_global], output_attentions)
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(probs)
        x = self.final_norm(x)
        if layout is not None:
            x = pad_output(x, layout.indices, B, T)  # (B, T, H)
        elif attention_mask is not None:
            x = x * attention_mask.ne(0)[..., None].to(x.dtype)
        if output_hidden_states:
            hidden_states[-1] = x  # as transformers: the last entry is last_hidden_state
        return ModernBertModelOutput(x, None if hidden_states is None else tuple(hidden_states),
                                     None if attentions is None else tuple(attentions))

    def _masks(self, attention_mask: torch.Tensor | None, T: int, device: torch.device
               ) -> dict[bool, torch.Tensor | None]:
        """Boolean masks (True = may attend) by is_global: the padding keys (B, 1, 1, T) or None for global
        layers; that and the window, (B or 1, 1, T, T), for local ones."""
        keys = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        window = window_mask(T, self.config.sliding_window, device)[None, None]  # (1, 1, T, T)
        return {True: keys, False: window if keys is None else keys & window}

    def _layout(self, attention_mask: torch.Tensor | None, T: int, device: torch.device, read: bool
                ) -> Unpadded | None:
        """The unpadded layout of a right-padded batch with at least ``unpad_threshold`` padding, else None.
        Row lengths come from host values (``unpadded.host_values``): a training step never waits for them."""
        if attention_mask is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return None  # a traced or compiled graph must not depend on this batch's values
        mask = host_values(attention_mask, read)
        lengths = None if mask is None else prefix_lengths(mask)
        if lengths is None or not lengths.size or lengths.min() < 1:
            return None
        if not unpads(lengths, T, device, self.unpad_threshold):
            return None
        return unpadding(lengths, T, device)
