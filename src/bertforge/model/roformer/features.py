"""RoFormer's encoder as a task model's per-token features (feature-based heads and ``--head-bilstm``): BERT's
``BertFeatures`` on RoFormerModel, whose forward is BertModel's."""

from __future__ import annotations

import copy
from typing import Any

from bertforge.model.roformer.model import RoFormerModel
from bertforge.model.task_model import BertFeatures


def roformer_features(source, settings: dict[str, Any], pretrained: bool) -> BertFeatures:
    """As ``task_model.bert_features`` (``features``, ``frozen`` and ``encoder_dropout`` of ``settings``), with the
    encoder of a RoFormer model directory ``source``."""
    overrides = {}
    if settings.get("encoder_dropout") is not None:
        overrides = {name: settings["encoder_dropout"] for name in source.family.dropout_fields}
    if pretrained:
        encoder = RoFormerModel.from_pretrained(source.path, **overrides)
    else:
        config = copy.deepcopy(source.config)
        for key, value in overrides.items():
            setattr(config, key, value)
        encoder = RoFormerModel(config)
    return BertFeatures(encoder, settings.get("features", "last"), settings.get("frozen", False))
