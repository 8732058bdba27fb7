"""Fill-mask: the masked-LM head's guesses for each [MASK] of a text (``fill_mask``), or at given positions of
rows of ids (``mask_guesses``, which a server calls on its batches)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bertforge.errors import UsageError
from bertforge.inference.encode import pad_batch
from bertforge.model import BertForPreTraining
from bertforge.tokenization import BertTokenizer


def untrained_head(model: BertForPreTraining, unused: tuple[str, ...] = ("cls.seq_relationship.",)) -> list[str]:
    """The masked-LM head's weights that ``from_pretrained`` just initialised (none: the head was trained). The
    head is what is neither the encoder nor ``unused`` (weights fill-mask does not read: the family's
    ``masked_lm_unused``). Shared by ``check_trained_head`` and the server, which serves no fill-mask then."""
    encoder = model.base_model_prefix + "."
    return [n for n in model.newly_initialized if not n.startswith((encoder, *unused))]


def check_trained_head(model: BertForPreTraining, path: str, unused: tuple[str, ...] = ("cls.seq_relationship.",)
                       ) -> None:
    """Refuse a masked-LM model whose head was just initialised (``untrained_head``): its guesses would be
    random."""
    fresh = untrained_head(model, unused)
    if fresh:
        raise UsageError(f"{path} has no trained masked-LM head ({len(fresh)} weights of {fresh[0].split('.')[0]} "
                         f"were just initialised), so its guesses would be random", setting="model",
                         hint="use a pre-trained model directory (bertforge pretrain writes OUT/model), or pass "
                              "--allow-untrained-head to see them anyway")


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: BertTokenizer, text: str, top_k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """For each [MASK] in ``text``, the ``top_k`` (token, probability) predictions of the MLM head."""
    if not 1 <= top_k <= tokenizer.vocab_size:
        raise UsageError(f"must be in [1, {tokenizer.vocab_size}] (the vocabulary size), got {top_k}",
                         setting="top_k")
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
    try:
        (guesses,) = mask_guesses(model, [enc["input_ids"][0].tolist()], [enc["token_type_ids"][0].tolist()],
                                  tokenizer.pad_token_id, [positions.tolist()], top_k)
    finally:
        model.train(was_training)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(p)) for i, p in zip(ids, probs)] for ids, probs in guesses]


@torch.no_grad()
def mask_guesses(model, input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]], pad_id: int,
                 positions: Sequence[Sequence[int]], top_k: int | Sequence[int]
                 ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each row of ids and each of its ``positions``, the masked-LM head's ``top_k`` guesses there as
    (token ids, probabilities), best first, from one forward pass over the padded rows. ``top_k``: one for every
    row, or one per row (a server batches requests that ask for different ones)."""
    ks = [top_k] * len(input_ids) if isinstance(top_k, int) else list(top_k)
    device = next(model.parameters()).device
    ids, types, mask = pad_batch(input_ids, token_type_ids, pad_id, device)
    rows = torch.tensor([b for b, p in enumerate(positions) for _ in p], device=device)
    slots = torch.tensor([j for p in positions for j in range(len(p))], device=device)
    if isinstance(model, BertForPreTraining):  # the last layer and the vocabulary projection at the positions alone
        width = max(len(p) for p in positions)
        at = torch.tensor([list(p) + [0] * (width - len(p)) for p in positions], device=device)  # (B, S)
        hidden = model.bert(ids, types, mask, output_positions=at).last_hidden_state  # (B, S, H)
        logits = model.cls.predictions(hidden[rows, slots], model.bert.embeddings.word_embeddings.weight)  # (M, V)
    else:  # another masked LM: its logits everywhere, read at the positions
        logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).prediction_logits  # (B, T, V)
        logits = logits[rows, torch.tensor([i for p in positions for i in p], device=device)]  # (M, V)
    top = logits.float().softmax(-1).topk(max(ks), dim=-1)
    values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
    out, m = [], 0
    for p, k in zip(positions, ks):
        out.append([(indices[m + j, :k], values[m + j, :k]) for j in range(len(p))])
        m += len(p)
    return out
