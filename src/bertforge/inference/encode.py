"""Sentence vectors: sort inputs by length, pad per batch, run without gradients, restore order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from bertforge.data.batching import length_sorted_batches, pad_rows
from bertforge.errors import UsageError
from bertforge.model import BertModel
from bertforge.model.unpadded import to_device
from bertforge.tokenization import BertTokenizer

Pooling = Literal["cls", "pooler", "mean"]
POOLINGS = ("mean", "cls", "pooler")


def untrained_pooler(model: BertModel) -> list[str]:
    """The pooler weights ``from_pretrained`` found no saved value for (an encoder saved without its pooler,
    such as a token-level head's): a freshly initialised pooler, whose output is random."""
    fresh = getattr(model, "newly_initialized", [])
    return [n for n in fresh if n.removeprefix(f"{model.base_model_prefix}.").startswith("pooler.")]


def pooling_problem(model: BertModel, pooling: Pooling) -> str | None:
    """Why ``model`` cannot give ``pooling`` vectors (no pooler layer, or one never trained), or None."""
    if pooling != "pooler":
        return None
    if getattr(model, "pooler", None) is None:
        return "this model has no pooler layer"
    fresh = untrained_pooler(model)
    if fresh:
        return (f"pooling 'pooler': the model's pooler was never trained ({', '.join(fresh)} are not in its weights "
                "file and were just initialised), so its vectors would be random")
    return None


def pad_batch(input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]], pad_id: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of ids and token types, right-padded into (B, T) ids, types and attention mask on ``device``.
    ``to_device`` keeps host copies: the model reads the row lengths without waiting for the device."""
    ids = to_device(torch.from_numpy(pad_rows(input_ids, pad_id)), device)
    types = to_device(torch.from_numpy(pad_rows(token_type_ids, 0)), device)
    mask = to_device(torch.from_numpy(pad_rows([[1] * len(r) for r in input_ids], 0)), device)
    return ids, types, mask


@torch.no_grad()
def encode_rows(model: BertModel, input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]], pad_id: int,
                pooling: Pooling | Sequence[Pooling] = "mean", normalize: bool | Sequence[bool] = False
                ) -> torch.Tensor:
    """One vector per row of ids (N, H), float32 on the CPU, from one forward pass over the padded rows.

    ``pooling`` and ``normalize`` (to unit length): one for every row, or one per row (a server batches requests
    that ask for different ones); see ``encode``. Unchecked: ask ``pooling_problem`` first."""
    ids, types, mask = pad_batch(input_ids, token_type_ids, pad_id, next(model.parameters()).device)
    out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
    hidden = out.last_hidden_state  # (B, T, H)
    wanted = {pooling} if isinstance(pooling, str) else set(pooling)
    pooled = {}
    if "mean" in wanted:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled["mean"] = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)  # over real tokens
    if "cls" in wanted:
        pooled["cls"] = hidden[:, 0]
    if "pooler" in wanted:
        pooled["pooler"] = out.pooler_output
    vectors = (pooled[pooling] if isinstance(pooling, str)
               else torch.stack([pooled[p][b] for b, p in enumerate(pooling)])).float().cpu()  # (N, H)
    if isinstance(normalize, bool):
        return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
    unit = torch.tensor(normalize).unsqueeze(-1)  # (N, 1)
    return torch.where(unit, torch.nn.functional.normalize(vectors, dim=-1), vectors)


@torch.no_grad()
def encode(model: BertModel, tokenizer: BertTokenizer, texts: Sequence[str],
           text_pairs: Sequence[str] | None = None, *, pooling: Pooling = "mean", max_length: int = 512,
           max_tokens: int = 8192, max_batch_size: int = 64, normalize: bool = False,
           compile: bool = False) -> torch.Tensor:
    """One vector per input (N, H), in input order.

    ``pooling``: ``"mean"`` over real tokens (what sentence encoders such as MiniLM are trained with),
    ``"cls"`` the final [CLS] vector, or ``"pooler"`` BERT's tanh pooler output (refused when the pooler
    was not in the saved weights: see ``untrained_pooler``). Batches of similar
    lengths; what padding remains is skipped by the encoder (``model/unpadded.py``). ``compile``: run the
    model through ``torch.compile`` (slower on CPU, where the compiled graph runs padded; for GPUs).
    """
    if pooling not in POOLINGS:
        raise UsageError(f"pooling must be 'mean', 'cls' or 'pooler', got {pooling!r}", setting="pooling")
    problem = pooling_problem(model, pooling)
    if problem:
        raise UsageError(problem, setting="pooling" if getattr(model, "pooler", None) is None else None,
                         hint="use mean or cls pooling")
    enc = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                    max_length=max_length, padding=False, return_tensors=None)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    was_training = model.training
    model.eval()
    out = torch.empty(len(ids), model.config.hidden_size)
    net = torch.compile(model, dynamic=True) if compile else model
    try:
        for batch in length_sorted_batches([len(r) for r in ids], max_tokens, max_batch_size):
            out[batch] = encode_rows(net, [ids[i] for i in batch], [types[i] for i in batch],
                                     tokenizer.pad_token_id, pooling, normalize)
    finally:
        model.train(was_training)
    return out
