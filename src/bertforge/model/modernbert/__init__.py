"""The ModernBERT family (Warner et al., 2024): pre-norm blocks without biases, rotary positions with separate
bases for global and local layers, GeGLU, global attention every n layers and sliding-window attention
elsewhere, run on the real tokens only; numerically identical to `transformers`' ModernBERT."""

from bertforge.model.modernbert.config import ModernBertConfig
from bertforge.model.modernbert.heads import (MaskedLMOutput, ModernBertForMaskedLM, ModernBertForMultipleChoice,
                                              ModernBertForQuestionAnswering, ModernBertForSequenceClassification,
                                              ModernBertForTokenClassification, ModernBertPredictionHead)
from bertforge.model.modernbert.model import ModernBertModel, ModernBertModelOutput
from bertforge.model.modernbert.pretrained import ModernBertPreTrainedModel

__all__ = ["ModernBertConfig", "ModernBertPreTrainedModel", "ModernBertModel", "ModernBertModelOutput",
           "ModernBertPredictionHead", "ModernBertForMaskedLM", "MaskedLMOutput", "ModernBertForSequenceClassification",
           "ModernBertForTokenClassification", "ModernBertForQuestionAnswering", "ModernBertForMultipleChoice"]
