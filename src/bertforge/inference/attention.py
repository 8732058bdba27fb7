"""Attention probabilities of rows of ids: what `bertforge attention` draws and a server's /attention answers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bertforge.inference.encode import pad_batch
from bertforge.model import BertModel


@torch.no_grad()
def attention_maps(model: BertModel, input_ids: Sequence[list[int]], token_type_ids: Sequence[list[int]],
                   pad_id: int, layers: Sequence[Sequence[int]], heads: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """For each row, its attention probabilities (len(layers[b]), len(heads[b]), T_b, T_b), float32, over its own
    tokens (the padding cut away); one forward pass over the padded rows. ``layers[b]``, ``heads[b]``: which of
    them row ``b`` wants, by number from 0."""
    ids, types, mask = pad_batch(input_ids, token_type_ids, pad_id, next(model.parameters()).device)
    out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True)
    attentions = torch.stack(out.attentions, 1).float().cpu()  # (B, L, A, T, T)
    return [attentions[b][list(layers[b])][:, list(heads[b])][..., :len(row), :len(row)].numpy()
            for b, row in enumerate(input_ids)]
