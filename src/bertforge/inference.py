"""Batch encoding for inference: sort by length, pad per bucket, run without gradients, restore order.

Padding every batch to a fixed length wastes the work of the pad positions (and attention is
quadratic in length). Sorting the inputs by length first makes each batch nearly rectangular.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from bertforge.model import BertForPreTraining, BertModel
from bertforge.tokenization import BertTokenizer

Pooling = Literal["cls", "pooler", "mean"]


def length_sorted_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, each at most ``max_tokens`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) + 1 > max_batch_size or (len(batch) + 1) * longest > max_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into (B, T) ids and a (B, T) attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


@torch.no_grad()
def encode(model: BertModel, tokenizer: BertTokenizer, texts: Sequence[str],
           text_pairs: Sequence[str] | None = None, *, pooling: Pooling = "mean", max_length: int = 512,
           max_tokens: int = 8192, max_batch_size: int = 64, normalize: bool = False) -> torch.Tensor:
    """One vector per input (N, H), in input order.

    ``pooling``: ``"mean"`` over real tokens (what sentence encoders such as MiniLM are trained with),
    ``"cls"`` the final [CLS] vector, or ``"pooler"`` BERT's tanh pooler output.
    """
    enc = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                    max_length=max_length, padding=False, return_tensors=None)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(ids), model.config.hidden_size)
    try:
        for batch in length_sorted_batches([len(r) for r in ids], max_tokens, max_batch_size):
            input_ids, mask = pad_batch([ids[i] for i in batch], tokenizer.pad_token_id)
            token_types, _ = pad_batch([types[i] for i in batch], 0)
            input_ids, mask, token_types = input_ids.to(device), mask.to(device), token_types.to(device)
            result = model(input_ids, token_types, mask)
            if pooling == "mean":
                weights = mask.unsqueeze(-1).to(result.last_hidden_state.dtype)
                vectors = (result.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1)
            elif pooling == "cls":
                vectors = result.last_hidden_state[:, 0]
            elif pooling == "pooler":
                vectors = result.pooler_output
            else:
                raise ValueError(f"pooling must be 'mean', 'cls' or 'pooler', got {pooling!r}")
            out[batch] = vectors.float().cpu()
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: BertTokenizer, text: str, top_k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """For each [MASK] in ``text``, the ``top_k`` (token, probability) predictions of the MLM head."""
    enc = tokenizer(text)
    positions = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
    if positions.numel() == 0:
        raise ValueError(f"no {tokenizer.convert_ids_to_tokens(tokenizer.mask_token_id)} token in {text!r}")
    was_training = model.training
    model.eval()
    logits = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).prediction_logits[0]
    model.train(was_training)
    probs = logits[positions].softmax(-1)  # (M, V)
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(ps, ids)]
            for ps, ids in zip(top.values, top.indices)]
