"""Pre-training objectives by name: what the ``--objective`` flag chooses (see ``objectives/base.py``)."""

from __future__ import annotations

from bertforge.objectives.base import Objective
from bertforge.objectives.mlm import MaskedLM, MaskedLMWithNSP, MaskingSettings, continuation_mask

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (MaskedLMWithNSP, MaskedLM)}

__all__ = ["OBJECTIVES", "Objective", "MaskedLM", "MaskedLMWithNSP", "MaskingSettings", "continuation_mask"]
