"""XLNetModel (the encoder, with Transformer-XL memory) and XLNetLMHeadModel (the permutation-LM head).

Everything is batch-first, (B, T, H), memories included: ``mems`` are n_layer tensors (B, M, H), where
transformers keeps (M, B, H). Weight names are transformers' (``word_embedding``, ``mask_emb``,
``layer.0.rel_attn.q``, ``layer.0.ff.layer_1``..., ``lm_loss``), so checkpoints travel both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import UsageError
from bertforge.model.dropout import Dropout
from bertforge.model.heads import check_class_ids
from bertforge.model.xlnet.attention import AttentionInputs, RelativeAttention, relative_positions
from bertforge.model.xlnet.config import XLNetConfig
from bertforge.model.xlnet.pretrained import XLNetPreTrainedModel

ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu,
               "silu": F.silu, "swish": F.silu}


def require_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], of: str) -> None:
    if tuple(tensor.shape) != expected:
        raise UsageError(f"{name} has shape {tuple(tensor.shape)} but must be {expected} for {of}")


@dataclass
class XLNetModelOutput:
    last_hidden_state: torch.Tensor  # (B, N, H) query stream with target_mapping, else (B, T, H)
    mems: list[torch.Tensor] | None = None  # n_layer of (B, M, H) with use_mems: each layer's input


@dataclass
class XLNetLMHeadModelOutput:
    loss: torch.Tensor | None = None  # mean cross-entropy over labels that are not -100
    logits: torch.Tensor | None = None  # (B, N, V) with target_mapping, else (B, T, V)
    mems: list[torch.Tensor] | None = None


class XLNetFeedForward(nn.Module):
    """Position-wise FFN with residual and post-LayerNorm; shared by both streams."""

    def __init__(self, config: XLNetConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.layer_1 = nn.Linear(config.d_model, config.d_inner)
        self.layer_2 = nn.Linear(config.d_inner, config.d_model)
        self.dropout = Dropout(config.dropout)
        self.act = ACTIVATIONS[config.ff_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.layer_2(self.dropout(self.act(self.layer_1(x)))))
        return self.layer_norm(y + x)


class XLNetLayer(nn.Module):
    def __init__(self, config: XLNetConfig):
        super().__init__()
        self.rel_attn = RelativeAttention(config)
        self.ff = XLNetFeedForward(config)

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, mem: torch.Tensor | None,
                inputs: AttentionInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, g = self.rel_attn(h, g, mem, inputs)
        return self.ff(h), None if g is None else self.ff(g)


class XLNetModel(XLNetPreTrainedModel):
    """Word embedding -> n_layer two-stream relative-attention layers. No absolute positions.

    In training, dropout on the position sinusoids is drawn once for the batch (transformers draws it
    per row); in eval mode the two are identical.
    """

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.word_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.mask_emb = nn.Parameter(torch.empty(1, 1, config.d_model))  # the query stream's start
        self.layer = nn.ModuleList(XLNetLayer(config) for _ in range(config.n_layer))
        self.dropout = Dropout(config.dropout)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, mems: list[torch.Tensor] | None = None,
                perm_mask: torch.Tensor | None = None, target_mapping: torch.Tensor | None = None,
                use_mems: bool | None = None, input_mask: torch.Tensor | None = None) -> XLNetModelOutput:
        """input_ids, token_type_ids: (B, T). attention_mask: (B, T) 1 = token, 0 = padding (or
        input_mask, its negation, as in XLNet's code). mems: n_layer of (B, M, H) from the previous
        segment, always attended to. perm_mask: (B, T, T), 1 where query i may not see token j.
        target_mapping: (B, N, T), one-hot rows (all-zero rows pad a short row of targets); with it the
        query stream runs and the output is one vector per target. use_mems: return new mems (default
        config.use_mems_train / use_mems_eval)."""
        cfg = self.config
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise UsageError(f"input_ids must be a (batch, length) tensor, got shape "
                             f"{tuple(getattr(input_ids, 'shape', ()))}")
        B, T = input_ids.shape
        use_mems = (cfg.use_mems_train if self.training else cfg.use_mems_eval) if use_mems is None else use_mems
        if mems is not None:
            if len(mems) != cfg.n_layer or any(m.dim() != 3 or m.shape[0] != B or m.shape[2] != cfg.d_model
                                               or m.shape[1] != mems[0].shape[1] for m in mems):
                raise UsageError(f"mems must be {cfg.n_layer} tensors of shape (batch={B}, M, {cfg.d_model}), "
                                 f"got {[tuple(m.shape) for m in mems]}")
        M = mems[0].shape[1] if mems is not None else 0
        inputs = self._attention_inputs(B, T, M, token_type_ids, attention_mask, input_mask, perm_mask,
                                        target_mapping, input_ids.device)

        h = self.dropout(self.word_embedding(input_ids))  # (B, T, H)
        g = None
        if inputs.target_pos is not None:
            g = self.dropout(self.mask_emb.expand(B, inputs.target_pos.shape[1], -1))  # (B, N, H)
        new_mems = []
        for i, layer in enumerate(self.layer):
            mem = None if mems is None else mems[i]
            if use_mems:
                new_mems.append(self._cache(h, mem))
            h, g = layer(h, g, mem, inputs)
        out = self.dropout(h if g is None else g)
        return XLNetModelOutput(out, new_mems if use_mems else None)

    def _cache(self, h: torch.Tensor, mem: torch.Tensor | None) -> torch.Tensor:
        """The next segment's memory: the first reuse_len states appended, the last mem_len kept."""
        reuse, keep = self.config.reuse_len, self.config.mem_len
        cur = h[:, :reuse] if reuse else h
        new = cur if mem is None else torch.cat([mem, cur], dim=1)
        return (new[:, -keep:] if keep else new).detach()  # (B, M', H)

    def _attention_inputs(self, B: int, T: int, M: int, token_type_ids: torch.Tensor | None,
                          attention_mask: torch.Tensor | None, input_mask: torch.Tensor | None,
                          perm_mask: torch.Tensor | None, target_mapping: torch.Tensor | None,
                          device: torch.device) -> AttentionInputs:
        """Masks, segment flags, target positions and position sinusoids, checked and built once."""
        cfg, K = self.config, M + T
        for name, t in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask),
                        ("input_mask", input_mask), ("perm_mask", perm_mask)):
            if t is not None:
                expected = (B, T, T) if name == "perm_mask" else (B, T)
                require_shape(name, t, expected, f"input_ids of shape {(B, T)}")
        if attention_mask is not None and input_mask is not None:
            raise UsageError("give attention_mask (0 = padding) or input_mask (1 = padding), not both")
        if cfg.bi_data and B % 2:
            raise UsageError(f"bi_data needs an even batch (forward and backward halves), got {B}")
        pad = None if attention_mask is None and input_mask is None else (
            ~attention_mask.bool() if attention_mask is not None else input_mask > 0)  # (B, T)
        blocked = hidden_keys(pad, perm_mask, M, cfg.attn_type == "uni", cfg.same_length, B, T, device)
        mask_h = None
        if blocked is not None:  # the content stream always sees its own token
            self_key = torch.arange(K, device=device) == torch.arange(M, K, device=device)[:, None]  # (T, K)
            mask_h = (blocked & ~self_key)[:, None]
        seg = None
        if token_type_ids is not None:  # memory counts as segment 0, as in transformers
            seg = token_type_ids[:, :, None] != F.pad(token_type_ids, (M, 0))[:, None, :]  # (B, T, K)
        pos_emb = relative_positions(T, K, cfg.d_model, cfg.clamp_len, cfg.bi_data, device)
        inputs = AttentionInputs(self.dropout(pos_emb.to(self.mask_emb.dtype)), mask_h,
                                 None if seg is None else seg[:, None])
        if target_mapping is None:
            return inputs

        tm = target_mapping
        if tm.dim() != 3 or tm.shape[0] != B or tm.shape[2] != T:
            raise UsageError(f"target_mapping must be (batch={B}, num_predict, length={T}), "
                             f"got {tuple(tm.shape)}")
        if not (((tm == 0) | (tm == 1)).all() and (tm.sum(2) <= 1).all() and (tm.sum(1) <= 1).all()):
            raise UsageError("target_mapping rows must be one-hot (or all zero for padding targets), each "
                             "position a target at most once")
        pos = tm.argmax(dim=2)  # (B, N); a padding row points at 0 and is zeroed by target_on
        rows = pos[:, :, None].expand(-1, -1, K)  # (B, N, K)
        inputs.target_pos = pos
        inputs.target_on = tm.amax(dim=2).to(inputs.pos_emb.dtype)[:, None, :, None]
        inputs.mask_g = None if blocked is None else blocked.gather(1, rows)[:, None]
        inputs.seg_g = None if seg is None else seg.gather(1, rows)[:, None]
        return inputs


def hidden_keys(pad: torch.Tensor | None, perm_mask: torch.Tensor | None, M: int, uni: bool, same_length: bool,
                B: int, T: int, device: torch.device) -> torch.Tensor | None:
    """(B, T, M + T) bool, True where query i may not attend to key j (None: nothing hidden).

    Hidden: padding keys (pad (B, T)), perm_mask > 0, and with ``uni`` Transformer-XL's causal window
    (same_length: every query sees the same number of keys). Memory is visible unless ``uni`` hides it.
    """
    blocked = None if pad is None else pad[:, None, :].expand(B, T, T)
    if perm_mask is not None:
        blocked = perm_mask > 0 if blocked is None else blocked | (perm_mask > 0)
    if blocked is not None and M:
        blocked = torch.cat([blocked.new_zeros(B, T, M), blocked], dim=2)
    if uni:
        causal = torch.ones(T, M + T, dtype=torch.bool, device=device).triu(M + 1)
        if same_length:
            causal[:, :T] |= torch.ones(T, T, dtype=torch.bool, device=device).tril(-1)
        blocked = causal.expand(B, T, M + T) if blocked is None else blocked | causal
    return blocked


class XLNetLMHeadModel(XLNetPreTrainedModel):
    """XLNetModel -> lm_loss, a Linear whose matrix is the word embedding (tie_word_embeddings)."""

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.lm_loss = nn.Linear(config.d_model, config.vocab_size)
        self.init_weights()
        if config.tie_word_embeddings:
            self.lm_loss.weight = self.transformer.word_embedding.weight

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, mems: list[torch.Tensor] | None = None,
                perm_mask: torch.Tensor | None = None, target_mapping: torch.Tensor | None = None,
                use_mems: bool | None = None, input_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> XLNetLMHeadModelOutput:
        """As XLNetModel.forward; labels: (B, N) token ids of the targets with target_mapping, else
        (B, T); -100 adds no loss."""
        out = self.transformer(input_ids, token_type_ids, attention_mask, mems, perm_mask, target_mapping,
                               use_mems, input_mask)
        logits = self.lm_loss(out.last_hidden_state)  # (B, N or T, V)
        loss = None
        if labels is not None:
            B, N, V = logits.shape
            require_shape("labels", labels, (B, N), f"logits of shape {(B, N, V)}")
            check_class_ids("labels", labels, V, what="token ids")
            loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1).long(), ignore_index=IGNORE_INDEX)
        return XLNetLMHeadModelOutput(loss, logits, out.mems)
