"""Fill-mask: the masked-LM head's guesses for each [MASK] of a text."""

from __future__ import annotations

import torch

from bertforge.errors import UsageError
from bertforge.model import BertForPreTraining
from bertforge.tokenization import BertTokenizer


def check_trained_head(model: BertForPreTraining, path: str) -> None:
    """Refuse a model whose masked-LM head was just initialised: its guesses would be random."""
    fresh = [n for n in model.newly_initialized if n.startswith("cls.predictions")]
    if fresh:
        raise UsageError(f"{path} has no trained masked-LM head ({len(fresh)} weights of cls.predictions were "
                         f"just initialised), so its guesses would be random", flag="--model",
                         hint="use a pre-trained model directory (bertforge pretrain writes OUT/model), or pass "
                              "--allow-untrained-head to see them anyway")


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: BertTokenizer, text: str, top_k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """For each [MASK] in ``text``, the ``top_k`` (token, probability) predictions of the MLM head."""
    if not 1 <= top_k <= tokenizer.vocab_size:
        raise UsageError(f"must be in [1, {tokenizer.vocab_size}] (the vocabulary size), got {top_k}",
                         flag="--top-k")
    limit = model.config.max_position_embeddings
    enc = tokenizer(text, max_length=limit)
    positions = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
    pieces = tokenizer.piece_ids([text])[0]
    written = pieces.count(tokenizer.mask_token_id)
    mask = tokenizer.convert_ids_to_tokens(tokenizer.mask_token_id)
    if positions.numel() < written:  # the text was cut at the position limit, and a [MASK] with it
        first_cut = [i for i, p in enumerate(pieces) if p == tokenizer.mask_token_id][positions.numel()]
        raise UsageError(f"the {mask} at piece {first_cut + 1:,} of {len(pieces):,} lies past the model's "
                         f"{limit}-position limit (max_position_embeddings): the text is truncated to {limit} "
                         f"pieces with [CLS] and [SEP], which cuts it away", hint=f"put each {mask} within the "
                         f"first {limit - 2} pieces of its text")
    if positions.numel() == 0:
        raise UsageError(f"no {mask} token in {text!r}", hint=f"write {mask} where a word should be guessed")
    was_training = model.training
    model.eval()
    logits = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).prediction_logits[0]
    model.train(was_training)
    probs = logits[positions].softmax(-1)  # (M, V)
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(ps, ids)]
            for ps, ids in zip(top.values, top.indices)]
