"""Text from a left-to-right model (``pretrain --objective ltr``): greedy or top-k sampling, token by token."""

from __future__ import annotations

import warnings

import torch

from bertforge.errors import UsageError
from bertforge.model import BertLMHeadModel
from bertforge.tokenization import BertTokenizer


@torch.no_grad()
def generate(model: BertLMHeadModel, tokenizer: BertTokenizer, prefix: str, *, max_new_tokens: int = 20,
             top_k: int = 0, temperature: float = 1.0, seed: int = 0) -> str:
    """``prefix`` continued by up to ``max_new_tokens`` pieces (stopping at [SEP]); ``top_k`` 0 is greedy,
    otherwise each piece is sampled from the ``top_k`` likeliest at ``temperature`` (seeded).

    The model has ``max_position_embeddings`` positions for [CLS], the prefix and the new pieces: a prefix
    cut to fit, or fewer new pieces than asked because the positions run out, is warned about (not silent)."""
    if max_new_tokens < 1:
        raise UsageError(f"must be >= 1, got {max_new_tokens}", setting="max_new_tokens")
    if not 0 <= top_k <= tokenizer.vocab_size:
        raise UsageError(f"must be in [0, {tokenizer.vocab_size}], got {top_k}", setting="top_k")
    if temperature <= 0:
        raise UsageError(f"must be > 0, got {temperature}", setting="temperature")
    limit = model.config.max_position_embeddings
    pieces = tokenizer.piece_ids([prefix])[0]
    ids = [tokenizer.cls_token_id, *pieces][:limit - 1]
    start = len(ids)
    if start - 1 < len(pieces):
        warnings.warn(f"the prefix has {len(pieces):,} pieces: only its first {start - 1:,} fit the model's "
                      f"{limit} positions (max_position_embeddings) with [CLS] and one new piece", stacklevel=2)
    if max_new_tokens > limit - start:
        warnings.warn(f"max_new_tokens {max_new_tokens:,}: at most {limit - start:,} new pieces fit after this "
                      f"{start - 1}-piece prefix in the model's {limit} positions (max_position_embeddings); "
                      "generation stops there", stacklevel=2)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for _ in range(min(max_new_tokens, limit - len(ids))):
        logits = model(torch.tensor([ids], device=device)).logits[0, -1].float().cpu()  # (V,)
        logits[[tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.mask_token_id]] = float("-inf")
        if top_k == 0:
            token = int(logits.argmax())
        else:
            values, indices = (logits / temperature).topk(top_k)
            token = int(indices[torch.multinomial(values.softmax(-1), 1, generator=generator)])
        if token == tokenizer.sep_token_id:
            break
        ids.append(token)
    model.train(was_training)
    return tokenizer.decode(ids[1:start] + ids[start:])
