"""The RoFormer family (Su et al., 2021): BERT with rotary position embeddings in place of its position table,
and its heads, numerically identical to `transformers`' RoFormer; plus bertforge's pre-training models: masked LM
and a sentence-pair head for the NSP and SOP objectives, and ELECTRA's discriminator and generator."""

from bertforge.model.roformer.attention import RoFormerSelfAttention, SinusoidalPositions, rotate, sinusoid_table
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.heads import (RoFormerClassificationHead, RoFormerForMultipleChoice,
                                            RoFormerForQuestionAnswering, RoFormerForSequenceClassification,
                                            RoFormerForTokenClassification, RoFormerSequenceSummary)
from bertforge.model.roformer.model import RoFormerEmbeddings, RoFormerEncoder, RoFormerModel
from bertforge.model.roformer.pretrained import RoFormerPreTrainedModel
from bertforge.model.roformer.pretraining import (MaskedLMOutput, RoFormerForCausalLM, RoFormerForMaskedLM,
                                                  RoFormerForPreTraining)
from bertforge.model.roformer.replaced_token import RoFormerElectraPair, RoFormerForReplacedTokenDetection

__all__ = ["RoFormerConfig", "RoFormerPreTrainedModel", "RoFormerModel", "RoFormerEmbeddings", "RoFormerEncoder",
           "RoFormerSelfAttention", "SinusoidalPositions", "sinusoid_table", "rotate", "RoFormerForMaskedLM",
           "RoFormerForCausalLM", "RoFormerForPreTraining", "MaskedLMOutput", "RoFormerForSequenceClassification",
           "RoFormerForTokenClassification", "RoFormerForQuestionAnswering", "RoFormerForMultipleChoice",
           "RoFormerClassificationHead", "RoFormerSequenceSummary", "RoFormerForReplacedTokenDetection",
           "RoFormerElectraPair"]
