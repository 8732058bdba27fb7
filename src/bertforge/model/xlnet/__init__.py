"""The XLNet family (Yang et al., 2019): two-stream relative attention, Transformer-XL memory, the
permutation-LM objective and fine-tuning heads, numerically identical to `transformers`' XLNet."""

from bertforge.model.xlnet.config import XLNetConfig
from bertforge.model.xlnet.heads import (XLNetForMultipleChoice, XLNetForQuestionAnsweringSimple,
                                         XLNetForSequenceClassification, XLNetForTokenClassification,
                                         XLNetSequenceSummary)
from bertforge.model.xlnet.model import (XLNetLMHeadModel, XLNetLMHeadModelOutput, XLNetModel,
                                         XLNetModelOutput)
from bertforge.model.xlnet.permutation import (PermutationInputs, gather_targets, num_targets,
                                               permutation_mask, sample_permutation)
from bertforge.model.xlnet.pretrained import XLNetPreTrainedModel

__all__ = ["XLNetConfig", "XLNetPreTrainedModel", "XLNetModel", "XLNetModelOutput", "XLNetLMHeadModel",
           "XLNetLMHeadModelOutput", "XLNetSequenceSummary", "XLNetForSequenceClassification",
           "XLNetForTokenClassification", "XLNetForMultipleChoice", "XLNetForQuestionAnsweringSimple",
           "PermutationInputs", "sample_permutation", "permutation_mask", "gather_targets", "num_targets"]
