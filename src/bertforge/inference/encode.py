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


def untrained_pooler(model: BertModel) -> list[str]:
    """The pooler weights ``from_pretrained`` found no saved value for (an encoder saved without its pooler,
    such as a token-level head's): a freshly initialised pooler, whose output is random."""
    fresh = getattr(model, "newly_initialized", [])
    return [n for n in fresh if n.removeprefix(f"{model.base_model_prefix}.").startswith("pooler.")]


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
    if pooling not in ("mean", "cls", "pooler"):
        raise UsageError(f"pooling must be 'mean', 'cls' or 'pooler', got {pooling!r}", flag="--pooling")
    if pooling == "pooler" and getattr(model, "pooler", True) is None:
        raise UsageError("this model has no pooler layer", flag="--pooling", hint="use mean or cls")
    fresh = untrained_pooler(model) if pooling == "pooler" else []
    if fresh:
        raise UsageError(f"pooling 'pooler': the model's pooler was never trained ({', '.join(fresh)} are not in its "
                         "weights file and were just initialised), so its vectors would be random",
                         hint="use mean or cls pooling")
    enc = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                    max_length=max_length, padding=False, return_tensors=None)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(ids), model.config.hidden_size)
    net = torch.compile(model, dynamic=True) if compile else model
    try:
        for batch in length_sorted_batches([len(r) for r in ids], max_tokens, max_batch_size):
            rows = [ids[i] for i in batch]
            # to_device keeps host copies: the model reads the row lengths without waiting for the device
            input_ids = to_device(torch.from_numpy(pad_rows(rows, tokenizer.pad_token_id)), device)
            mask = to_device(torch.from_numpy(pad_rows([[1] * len(r) for r in rows], 0)), device)
            token_types = to_device(torch.from_numpy(pad_rows([types[i] for i in batch], 0)), device)
            result = net(input_ids, token_types, mask)
            if pooling == "mean":
                weights = mask.unsqueeze(-1).to(result.last_hidden_state.dtype)
                vectors = (result.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1)
            elif pooling == "cls":
                vectors = result.last_hidden_state[:, 0]
            else:  # pooler
                vectors = result.pooler_output
            out[batch] = vectors.float().cpu()
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out
