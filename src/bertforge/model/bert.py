"""BertModel: embeddings, the encoder stack and the pooler, with input checks at the boundary."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.embeddings import BertEmbeddings
from bertforge.model.encoder import BertEncoder
from bertforge.model.outputs import BertOutput
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.unpadded import (Unpadded, host_values, pad_output, prefix_lengths, unpad_input,
                                      unpadding)

# Run on the real tokens only (model/unpadded.py) when at least this share of a batch is padding, by device type.
# CPU (MiniLM, benchmarks/finetune.py --threshold): the unpadded path costs up to 5% with no padding and breaks
# even at about 3% padding (1.1x at 9%, 1.4x at 30%). CUDA (H200, base, bf16, fine-tuning steps on SNLI-length
# batches of 32 with 45% padding, benchmarks/gpu.py): every unpadded variant was slower than the padded step
# (44 ms; jagged 142, repad 240), so other devices keep the padding. A model's ``unpad_threshold`` overrides it.
UNPAD_THRESHOLD = {"cpu": 0.05}


def unpads(lengths: np.ndarray, T: int, device: torch.device, threshold: float | None) -> bool:
    """Whether right-padded rows of these lengths run on their real tokens only: the padding's share is at least
    ``threshold`` (0: always, > 1: never; None: the device's share in UNPAD_THRESHOLD, never on other devices)."""
    if threshold is None:
        threshold = UNPAD_THRESHOLD.get(device.type, float("inf"))
    return 1 - lengths.sum() / (lengths.size * T) >= threshold


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
    index = sentence_positions(hidden[..., 0], attention_mask, last)[:, 0]  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def sentence_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, last: bool) -> torch.Tensor:
    """(B, 1) int64: where a sentence head reads its vector in a (B, T) batch (``input_ids``, or any tensor of
    that shape): [CLS] (0), or with ``last`` each row's last real token (``sentence_vector`` reads there).

    Given to ``BertModel(output_positions=...)``, the last layer runs at that position alone (the head reads
    nothing else), which saves most of one layer: on MiniLM (6 layers) ~14% of the encoder's matrix products."""
    if not last:
        return torch.zeros_like(input_ids[:, :1], dtype=torch.long)
    if attention_mask is None:
        return torch.full_like(input_ids[:, :1], input_ids.shape[1] - 1, dtype=torch.long)
    return (attention_mask.long().sum(1, keepdim=True) - 1).clamp(min=0)


class BertModel(BertPreTrainedModel):
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.unpad_threshold: float | None = None  # the device's default (bert.UNPAD_THRESHOLD); 0: always, > 1: never
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_positions: torch.Tensor | None = None) -> BertOutput:
        """input_ids, token_type_ids, attention_mask: (B, T); attention_mask 1 = token, 0 = padding.

        output_positions: (B, S) position indices at which alone the output is needed (a head that
        reads few positions, as the masked LM does). The last layer is then computed only there and
        last_hidden_state is (B, S, H); the pooler reads the first of them (a left-to-right model's pooler:
        the last), so make that [CLS] (the last real token) when the pooled output is used: see
        ``sentence_positions``. Not combinable with hidden states or attentions.

        Batches with padding (right-padded rows) run on their real tokens only (``model/unpadded.py``), with
        the same results; last_hidden_state is then zero at the padding. Hidden states or attentions take the
        padded path. In a training step nothing here waits for the device: the row lengths and the id checks
        use the host copies that ``unpadded.to_device`` keeps (without them the step takes the padded path).
        """
        read = not (self.training and torch.is_grad_enabled())  # outside a training step a sync costs little
        token_type_ids, attention_mask = check_inputs(self.config, input_ids, token_type_ids, attention_mask,
                                                      read=read)
        if output_positions is not None:
            if output_hidden_states or output_attentions:
                raise ValueError("output_positions cannot be combined with output_hidden_states or "
                                 "output_attentions (the last layer is not computed at every position)")
            if output_positions.dim() != 2 or output_positions.shape[0] != input_ids.shape[0]:
                raise ValueError(f"output_positions must be (batch, count), got {tuple(output_positions.shape)} "
                                 f"for input_ids {tuple(input_ids.shape)}")
        lengths = self._lengths(attention_mask, read)
        layout = None if output_hidden_states or output_attentions else self._layout(input_ids, lengths)
        if layout is not None:
            x = self.embeddings(unpad_input(input_ids, layout.indices), unpad_input(token_type_ids, layout.indices),
                                layout.indices % layout.width)  # (N, H)
            x, hidden_states, attentions = self.encoder(x, layout, output_positions=output_positions)
            if output_positions is None:
                x = pad_output(x, layout.indices, layout.batch, layout.width)  # (B, T, H)
        else:
            full = lengths is not None and bool((lengths == input_ids.shape[1]).all())  # host values
            mask = attention_mask_for(None if full else attention_mask, input_ids, self.config.is_decoder)
            x = self.embeddings(input_ids, token_type_ids)
            x, hidden_states, attentions = self.encoder(x, mask, output_hidden_states, output_attentions,
                                                        output_positions)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(x, None if output_positions is not None else attention_mask)
        return BertOutput(x, pooled, hidden_states, attentions)

    def _lengths(self, attention_mask: torch.Tensor | None, read: bool) -> np.ndarray | None:
        """(B,) real tokens per row, from host values (None: unknown without waiting, or not right-padded)."""
        if attention_mask is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return None  # a traced or compiled graph must not depend on this batch's values
        mask = host_values(attention_mask, read)
        return None if mask is None else prefix_lengths(mask)

    def _layout(self, input_ids: torch.Tensor, lengths: np.ndarray | None) -> Unpadded | None:
        """The unpadded layout when padding is at least ``unpad_threshold`` of the batch, else None."""
        if lengths is None or not lengths.size or lengths.min() < 1:
            return None
        T = input_ids.shape[1]
        if not unpads(lengths, T, input_ids.device, self.unpad_threshold):
            return None
        return unpadding(lengths, T, input_ids.device, self.config.is_decoder)


def attention_mask_for(attention_mask: torch.Tensor | None, input_ids: torch.Tensor, causal: bool
                       ) -> torch.Tensor | None:
    """The boolean mask self-attention takes (True = may attend): (B, 1, 1, T) for padding, (B, 1, T, T)
    with the causal rule (no position sees a later one), or None when every position sees every other.
    (A mask of ones is kept: knowing it is all ones would need its values, a device sync.)"""
    mask = None
    if attention_mask is not None:
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        T = input_ids.shape[1]
        lower = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()[None, None]  # (1, 1, T, T)
        mask = lower if mask is None else mask & lower
    return mask


def check_inputs(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                 attention_mask: torch.Tensor | None, read: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reject inputs the model would silently mis-read; return token types filled with zeros if absent.

    The id ranges are checked on host values (``unpadded.host_values``); with ``read`` False, tensors whose
    values are on the device alone are not read (a training step never waits for the device)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (batch, length) tensor, got shape "
                         f"{tuple(getattr(input_ids, 'shape', ()))}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    B, T = input_ids.shape
    if T > config.max_position_embeddings:
        raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                         f"({config.max_position_embeddings}); truncate the input or split it into windows")
    ids = host_values(input_ids, read) if input_ids.numel() else None
    if ids is not None:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {config.vocab_size}); "
                             f"was the input made with a different tokenizer?")
    for name, tensor in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {tuple(input_ids.shape)}")
    if token_type_ids is None:
        return torch.zeros_like(input_ids), attention_mask
    types = host_values(token_type_ids, read) if token_type_ids.numel() else None
    if types is not None and (int(types.min()) < 0 or int(types.max()) >= config.type_vocab_size):
        raise ValueError(f"token_type_ids must be in [0, {config.type_vocab_size}) (type_vocab_size), got "
                         f"values in [{int(types.min())}, {int(types.max())}]")
    return token_type_ids, attention_mask
