"""Pre-training objectives by name: what the ``--objective`` flag chooses (see ``objectives/base.py``)."""

from __future__ import annotations

from bertforge.objectives.base import Objective
from bertforge.objectives.bilm import BidirectionalLM
from bertforge.objectives.electra import ReplacedTokenDetection
from bertforge.objectives.ltr import LeftToRight
from bertforge.objectives.mlm import MaskedLM, MaskedLMWithNSP, MaskedLMWithSOP, MaskingSettings, continuation_mask
from bertforge.objectives.plm import PermutationLM

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (MaskedLMWithNSP, MaskedLM, MaskedLMWithSOP, LeftToRight,
                                                               PermutationLM, BidirectionalLM, ReplacedTokenDetection)}

__all__ = ["OBJECTIVES", "Objective", "MaskedLM", "MaskedLMWithNSP", "MaskedLMWithSOP", "LeftToRight", "PermutationLM",
           "BidirectionalLM", "ReplacedTokenDetection", "MaskingSettings", "continuation_mask"]
