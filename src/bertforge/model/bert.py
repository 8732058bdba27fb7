"""BertModel: embeddings, the encoder stack and the pooler, with input checks at the boundary."""

from __future__ import annotations

import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.embeddings import BertEmbeddings
from bertforge.model.encoder import BertEncoder
from bertforge.model.outputs import BertOutput
from bertforge.model.pretrained import BertPreTrainedModel


class BertPooler(nn.Module):
    """tanh(dense(h)) at [CLS]: the sentence vector that classification heads read.

    A left-to-right model (``is_decoder``) reads the last real token instead: under the causal mask
    [CLS] sees nothing but itself, the last token sees the whole input.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.is_decoder = config.is_decoder

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.dense(sentence_vector(hidden, attention_mask, self.is_decoder)))  # (B, H)


def sentence_vector(hidden: torch.Tensor, attention_mask: torch.Tensor | None, last: bool) -> torch.Tensor:
    """(B, H): the first position of ``hidden`` (B, T, H), or with ``last`` each row's last real token."""
    if not last:
        return hidden[:, 0]
    T = hidden.shape[1]
    index = attention_mask.long().sum(1) - 1 if attention_mask is not None else \
        torch.full(hidden.shape[:1], T - 1, device=hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index.clamp(min=0)]


class BertModel(BertPreTrainedModel):
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_positions: torch.Tensor | None = None) -> BertOutput:
        """input_ids, token_type_ids, attention_mask: (B, T); attention_mask 1 = token, 0 = padding.

        output_positions: (B, S) position indices at which alone the output is needed (a head that
        reads few positions, as the masked LM does). The last layer is then computed only there and
        last_hidden_state is (B, S, H); the pooler reads the first of them, so make it 0 ([CLS]) when
        the pooled output is used. Not combinable with hidden states or attentions.
        """
        token_type_ids, attention_mask = check_inputs(self.config, input_ids, token_type_ids, attention_mask)
        if output_positions is not None:
            if output_hidden_states or output_attentions:
                raise ValueError("output_positions cannot be combined with output_hidden_states or "
                                 "output_attentions (the last layer is not computed at every position)")
            if output_positions.dim() != 2 or output_positions.shape[0] != input_ids.shape[0]:
                raise ValueError(f"output_positions must be (batch, count), got {tuple(output_positions.shape)} "
                                 f"for input_ids {tuple(input_ids.shape)}")
        mask = attention_mask_for(attention_mask, input_ids, self.config.is_decoder)
        x = self.embeddings(input_ids, token_type_ids)
        x, hidden_states, attentions = self.encoder(x, mask, output_hidden_states, output_attentions,
                                                    output_positions)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(x, None if output_positions is not None else attention_mask)
        return BertOutput(x, pooled, hidden_states, attentions)


def attention_mask_for(attention_mask: torch.Tensor | None, input_ids: torch.Tensor, causal: bool
                       ) -> torch.Tensor | None:
    """The boolean mask self-attention takes (True = may attend): (B, 1, 1, T) for padding, (B, 1, T, T)
    with the causal rule (no position sees a later one), or None when every position sees every other."""
    mask = None
    if attention_mask is not None and not bool(attention_mask.all()):
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        T = input_ids.shape[1]
        lower = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()[None, None]  # (1, 1, T, T)
        mask = lower if mask is None else mask & lower
    return mask


def check_inputs(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                 attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reject inputs the model would silently mis-read; return token types filled with zeros if absent."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (batch, length) tensor, got shape "
                         f"{tuple(getattr(input_ids, 'shape', ()))}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    B, T = input_ids.shape
    if T > config.max_position_embeddings:
        raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                         f"({config.max_position_embeddings}); truncate the input or split it into windows")
    if input_ids.numel():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {config.vocab_size}); "
                             f"was the input made with a different tokenizer?")
    for name, tensor in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {tuple(input_ids.shape)}")
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    elif token_type_ids.numel() and (int(token_type_ids.min()) < 0
                                     or int(token_type_ids.max()) >= config.type_vocab_size):
        raise ValueError(f"token_type_ids must be in [0, {config.type_vocab_size}) (type_vocab_size), got "
                         f"values in [{int(token_type_ids.min())}, {int(token_type_ids.max())}]")
    return token_type_ids, attention_mask
