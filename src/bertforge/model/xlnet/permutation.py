"""The permutation-LM objective's inputs: a factorisation order per row, as perm_mask, target_mapping, labels.

XLNet predicts each target from the tokens before it in a random factorisation order, and only the
last 1/K of the order is predicted (partial prediction). The visibility rules are XLNet's
``_local_perm`` (data_utils.py):

- context tokens (everything that is not a target) see each other, and are seen by every token;
- a target sees the context and the targets *before* it in the order;
- the query stream of a target does not see its own token; the content stream does (the model adds
  that, from perm_mask's diagonal);
- padding is seen by nobody.

Target rule used here: a uniformly random order over the *predictable* tokens of each row (n of them:
real, not special), and the last ``ceil(n / K)`` of it are the targets (none when n is 0). This is
plain token-level sampling, not XLNet's span sampling (``_sample_mask`` picks whole-word n-grams with
sentencepiece word-start marks, which a WordPiece vocabulary does not carry), and special tokens are
ordinary context rather than XLNet's separately-ordered <sep>/<cls>.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import UsageError


@dataclass
class PermutationInputs:
    perm_mask: torch.Tensor  # (B, T, T) float, 1 = query i may not attend to token j
    target_mapping: torch.Tensor  # (B, N, T) float, one-hot rows in position order; zero rows pad
    labels: torch.Tensor  # (B, N) long: the target tokens, -100 on padding rows


def num_targets(n: torch.Tensor, k: int) -> torch.Tensor:
    """Targets per row: ceil(n / k) of its n predictable tokens."""
    return (n + k - 1) // k


def permutation_mask(rank: torch.Tensor, is_target: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """perm_mask (B, T, T) from each token's place in the order ``rank`` (B, T) and ``is_target`` (B, T).

    Only targets are hidden: from context tokens, and from targets at or after them in the order (so a
    target never sees itself). Padding (attention_mask 0) is hidden from everyone. With the identity
    order and every token a target this is the causal mask: j >= i hidden.
    """
    tgt_i, tgt_j = is_target[:, :, None], is_target[:, None, :]
    blocked = tgt_j & (~tgt_i | (rank[:, :, None] <= rank[:, None, :]))  # (B, T, T)
    if attention_mask is not None:
        blocked = blocked | (attention_mask == 0)[:, None, :]
    return blocked.float()


def gather_targets(input_ids: torch.Tensor, is_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """target_mapping (B, N, T) and labels (B, N) for the targets of each row in position order;
    N is the largest count in the batch (at least 1), shorter rows padded with zero rows and -100."""
    B, T = is_target.shape
    count = is_target.sum(dim=1)  # (B,)
    N = max(int(count.max()), 1) if B else 1
    key = torch.arange(T, device=is_target.device) + T * (~is_target).long()  # targets first, in order
    pos = key.argsort(dim=1)[:, :N]  # (B, N)
    real = torch.arange(N, device=is_target.device) < count[:, None]  # (B, N)
    target_mapping = torch.zeros(B, N, T, device=is_target.device)
    target_mapping.scatter_(2, pos[..., None], real[..., None].float())
    labels = input_ids.gather(1, pos).masked_fill(~real, IGNORE_INDEX)
    return target_mapping, labels


def sample_permutation(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       predictable: torch.Tensor, k: int = 6,
                       generator: torch.Generator | None = None) -> PermutationInputs:
    """Sample a factorisation order per row and build the model's PLM inputs (see the module doc).

    input_ids, attention_mask (1 = token), predictable (True = may be a target; specials False): (B, T).
    Deterministic for a given generator state; draws one (B, T) uniform tensor from it.
    """
    if input_ids.dim() != 2:
        raise UsageError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    B, T = input_ids.shape
    for name, t in (("attention_mask", attention_mask), ("predictable", predictable)):
        if t is not None and tuple(t.shape) != (B, T):
            raise UsageError(f"{name} has shape {tuple(t.shape)} but input_ids has {(B, T)}")
    if not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive integer (predict the last 1/k of the order), got {k!r}")
    device = input_ids.device
    candidate = predictable.bool() if attention_mask is None else predictable.bool() & (attention_mask != 0)
    noise = torch.rand(B, T, generator=generator,
                       device=generator.device if generator is not None else device).to(device)
    order = noise.masked_fill(~candidate, -1.0).argsort(dim=1, stable=True)  # context first, then candidates
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(T, device=device).expand(B, T))
    m = num_targets(candidate.sum(dim=1), k)  # (B,)
    is_target = candidate & (rank >= T - m[:, None])  # the last m of the order
    target_mapping, labels = gather_targets(input_ids, is_target)
    return PermutationInputs(permutation_mask(rank, is_target, attention_mask), target_mapping, labels)
