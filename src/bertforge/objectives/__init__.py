"""Pre-training objectives by name: what the ``--objective`` flag chooses (see ``objectives/base.py``)."""

from __future__ import annotations

from bertforge.model.registry import FAMILIES, ModelFamily
from bertforge.objectives.base import Objective
from bertforge.objectives.bilm import BidirectionalLM
from bertforge.objectives.electra import ReplacedTokenDetection
from bertforge.objectives.ltr import LeftToRight
from bertforge.objectives.mlm import MaskedLM, MaskedLMWithNSP, MaskedLMWithSOP, MaskingSettings, continuation_mask
from bertforge.objectives.plm import PermutationLM

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (MaskedLMWithNSP, MaskedLM, MaskedLMWithSOP, LeftToRight,
                                                               PermutationLM, BidirectionalLM, ReplacedTokenDetection)}


def families_for(objective: str) -> list[ModelFamily]:
    """The families ``objective`` trains: those with the head it needs (many to many: masked LM trains BERT and
    ModernBERT), in the order they were registered."""
    return [f for f in FAMILIES.values() if OBJECTIVES[objective].head_kind in f.heads]


def objectives_for(family: ModelFamily) -> list[str]:
    """The names of the objectives that train ``family``."""
    return [name for name, objective in OBJECTIVES.items() if objective.head_kind in family.heads]


__all__ = ["OBJECTIVES", "Objective", "families_for", "objectives_for", "MaskedLM", "MaskedLMWithNSP",
           "MaskedLMWithSOP", "LeftToRight", "PermutationLM", "BidirectionalLM", "ReplacedTokenDetection",
           "MaskingSettings", "continuation_mask"]
